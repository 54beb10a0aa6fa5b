/** A vocabulary: pieces by id with their merge scores. */
export interface Vocab {
  /**
   * The text of each piece (UTF-8 decoded, invalid sequences as U+FFFD) as llama2.c's
   * tokenizer.bin stores it: spaces, not `▁`; BOS is `"\n<s>\n"`, EOS `"\n</s>\n"`; byte pieces
   * are the literal text `<0xHH>`.
   */
  pieces: string[];
  /** The raw bytes of each piece; the tokenizer works on these. */
  pieceBytes: Uint8Array[];
  /** Merge score of each piece (higher merges first). */
  scores: Float32Array;
  /** Id of the beginning-of-sequence token (1 for llama2.c). */
  bos: number;
  /** Id of the end-of-sequence token (2 for llama2.c). */
  eos: number;
  /** Length of the longest piece in bytes. */
  maxTokenLength: number;
  /** GGUF token types when known (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte). */
  tokenTypes?: Int32Array;
}
