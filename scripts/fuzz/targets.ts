/** Every fuzz target by name. */
import { safetensorsTarget, ggufTarget, llama2cTarget, configTarget } from './targets-model';
import { tokenizerTarget, calibTarget } from './targets-text';
import type { FuzzTarget, TargetName } from './types';

export const TARGET_BY_NAME: Readonly<Record<TargetName, FuzzTarget>> = {
  safetensors: safetensorsTarget,
  gguf: ggufTarget,
  llama2c: llama2cTarget,
  tokenizer: tokenizerTarget,
  config: configTarget,
  calib: calibTarget,
};
