/**
 * The quantization methods by name. Adding a method: a file in this folder implementing
 * {@link QuantMethod}, its name in `QUANT_METHODS` (lib/config/quantize.ts) with its options, and
 * one line here.
 */
import type { QuantMethodName } from '../config/quantize';
import type { QuantMethod } from './method';
import { rtnMethod } from './rtn';
import { gptqMethod } from './gptq';

export const METHODS: Readonly<Record<QuantMethodName, QuantMethod>> = {
  rtn: rtnMethod,
  gptq: gptqMethod,
};

export type { QuantMethod, MethodRun, MethodContext, ModuleLog, QuantizedModule, CalibrationSummary } from './method';
