// Writes the bundled public-domain corpora as text files: node --import tsx scripts/prepare-corpus.ts DIR
import { writeBundledCorpora } from '../src/data/bundled-corpora.js';

const dir = process.argv[2];
if (dir === undefined) {
  process.stderr.write('usage: node --import tsx scripts/prepare-corpus.ts DIR\n');
  process.exit(2);
}
const folders = writeBundledCorpora(dir);
process.stdout.write(`${JSON.stringify(folders, null, 2)}\n`);
