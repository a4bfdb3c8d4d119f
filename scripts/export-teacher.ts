// Exports a pretrained GPT-2 run as the bundled teacher: F16 weights and tokenizer files in
// Hugging Face layout, plus its held-out perplexities beside a unigram baseline's.
// Usage: node --import tsx scripts/export-teacher.ts RUN_MODEL_DIR OUT_DIR
// (RUN_MODEL_DIR is `<pretrain --out>/model`.) Prints the numbers as JSON.
import { noGrad } from '../src/autograd/index.js';
import { loadBundledCorpora, type CorpusDocument } from '../src/data/bundled-corpora.js';
import { loadGpt2Folder, saveGpt2Folder } from '../src/models/gpt2/io.js';
import type { Gpt2Model } from '../src/models/gpt2/model.js';
import { Gpt2Tokenizer } from '../src/tokenizer/index.js';

const [runDir, outDir] = process.argv.slice(2);
if (runDir === undefined || outDir === undefined) {
  process.stderr.write('usage: node --import tsx scripts/export-teacher.ts RUN_MODEL_DIR OUT_DIR\n');
  process.exit(2);
}

const tokenizer = Gpt2Tokenizer.bundled();
const corpora = loadBundledCorpora();

/** Concatenates documents, each followed by <|endoftext|>, as the pretraining data pipeline does. */
function tokenStream(docs: CorpusDocument[]): number[] {
  const ids: number[] = [];
  for (const doc of docs) {
    ids.push(...tokenizer.encode(doc.text, { specialTokens: 'plain' }), tokenizer.eotId);
  }
  return ids;
}

/** Mean cross-entropy (nats/token) over non-overlapping windows of the model's context length. */
function meanLoss(model: Gpt2Model, ids: number[], maxTokens: number): number {
  const T = model.config.nPositions;
  let total = 0;
  let count = 0;
  noGrad(() => {
    for (let start = 0; start + T + 1 <= ids.length && count < maxTokens; start += T) {
      const input = ids.slice(start, start + T);
      const target = ids.slice(start + 1, start + T + 1);
      total += model.loss(input, target, 1, T).item() * T;
      count += T;
    }
  });
  return total / count;
}

/** Unigram model with add-one smoothing, fitted on the training split. */
function unigramLoss(train: number[], test: number[], vocabSize: number): number {
  const counts = new Float64Array(vocabSize).fill(1);
  for (const id of train) counts[id]++;
  const total = train.length + vocabSize;
  let loss = 0;
  for (const id of test) loss -= Math.log(counts[id] / total);
  return loss / test.length;
}

// The numbers describe the exported F16 weights, which are what ships, not the float32 run.
saveGpt2Folder(loadGpt2Folder(runDir), outDir, { dtype: 'F16', tokenizer });
const model = loadGpt2Folder(outDir);
model.eval();
const train = tokenStream(corpora.sotuTrain);
const heldOut = tokenStream(corpora.sotuHeldOut);
const moby = tokenStream(corpora.mobyDick);
const maxTokens = 40_960;

const result = {
  parameters: model.parameterCount(),
  trainingSplitTokens: train.length,
  sotuHeldOut: {
    tokensScored: Math.min(maxTokens, heldOut.length),
    perplexity: Math.exp(meanLoss(model, heldOut, maxTokens)),
    unigramPerplexity: Math.exp(unigramLoss(train, heldOut.slice(0, maxTokens), model.config.vocabSize)),
  },
  mobyDick: {
    tokensScored: Math.min(maxTokens, moby.length),
    perplexity: Math.exp(meanLoss(model, moby, maxTokens)),
    unigramPerplexity: Math.exp(unigramLoss(train, moby.slice(0, maxTokens), model.config.vocabSize)),
  },
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
