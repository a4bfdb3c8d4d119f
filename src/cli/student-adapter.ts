// A distilled student (model_type "rwkv7-student") behind the command line's LanguageModel
// interface, so generate, tokenize and logits work on the folders that convert and distill write.

import { loadStudentFolder, saveStudentFolder, studentConfigToJson, studentNextLogits, type StudentModel, type StudentState } from '../models/student/index.js';
import type { NextLogits } from '../models/sampling.js';
import type { Tensor } from '../tensor/index.js';
import type { Gpt2Tokenizer } from '../tokenizer/index.js';
import type { LanguageModel } from './model-folder.js';
import { ModelAdapter, recurrentLogitsOf } from './model-adapter.js';

class StudentLanguageModel extends ModelAdapter<StudentModel> implements LanguageModel {
  readonly arch = 'rwkv7-student';

  get vocabSize(): number {
    return this.model.config.teacher.vocabSize;
  }
  /** Positions "keep" reads the teacher's learned table wpe, which ends at n_positions. */
  get maxSequenceLength(): number {
    return this.model.config.positions === 'keep' ? this.model.config.teacher.nPositions : Infinity;
  }
  get configJson(): Record<string, unknown> {
    return studentConfigToJson(this.model.config);
  }
  sequenceLogits(ids: readonly number[]): Float32Array | Float64Array {
    return this.model.forward(ids, 1, ids.length).logits.data; // (1, T, V)
  }
  recurrentLogits(ids: readonly number[]): Float32Array | Float64Array {
    return recurrentLogitsOf<StudentState>(ids, this.vocabSize, (id, state) => this.model.step(id, state));
  }
  nextLogits(): NextLogits {
    return studentNextLogits(this.model);
  }
  save(dir: string, tokenizer: Gpt2Tokenizer): void {
    saveStudentFolder(this.model, dir, { tokenizer });
  }
}

/** Loads the student of a folder holding config.json (model_type "rwkv7-student") and model.safetensors. */
export function loadStudent(dir: string): LanguageModel {
  return new StudentLanguageModel(loadStudentFolder(dir));
}
