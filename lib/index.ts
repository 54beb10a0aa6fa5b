/**
 * lowbit — quantize large language models from Node.js.
 *
 * The public surface: an explicit list of named exports, nothing else.
 */
export { LowbitError, isLowbitError, ERROR_CODES, type ErrorCode } from './errors';
export { LOWBIT_VERSION as version } from './version';
export {
  quantizeTensor, type QuantizeTensorOptions, type QuantizedTensor, type QuantStats, type TensorBytes, type Progress,
} from './ops/quantize';
export type { QuantizerOptions } from './config/quant';
export { packValues, unpackValues, packGptq, quantizeGptq, type PackLayout, type PackOptions, type GptqPacked, type GptqQuantized, type QuantizeGptqOptions } from './ops/pack';
export { openModel, type Model, type ModelSummary, type OpenModelOptions } from './formats/hf-dir';
export { inspectModel, detectModelSource, type ModelSource, type ModelSourceKind } from './formats/source';
export { downloadModel, type DownloadModelOptions } from './pipeline/download';
export { quantize, transformModel, type QuantizeRunOptions, type QuantizeResult, type ModuleLog, type TransformResult } from './pipeline/quantize';
export { qat, type QatRunOptions, type QatResult } from './pipeline/qat';
export type { QatOptions, QatData } from './config/qat';
export { generateSyntheticData, writeSyntheticData, type SyntheticDataOptions, type SyntheticDataMeta } from './train/synthetic';
export { Trainer, type TrainHyper, type StepResult } from './train/trainer';
export { ParamSet, type TrainArch } from './train/params';
export { type Transform, type RotateTransform, type SmoothQuantTransform } from './config/transform';
export { type TransformReport } from './pipeline/transform';
export { type KvCacheOptions, type ActQuantOptions, type ActInput } from './config/runtime-quant';
export { rotateRows, rotationInfo, kvQuantize, kvDequantize, actFakeQuant, type RotationInfo } from './ops/rtquant';
export { QUANT_METHODS, OUTPUT_FORMATS, type RtnConfig, type GptqConfig, type QuantizeConfig, type OutputFormat, type GgufOutputFormat, type QuantMethodName } from './config/quantize';
export type { CalibrationOptions } from './config/calibration';
export { writeSyntheticModel, SYNTHETIC_PRESETS, type SyntheticOptions, type SyntheticShape } from './runtime/synthetic';
export {
  openSafetensors, writeSafetensors, readSafetensorsHeader,
  type SafetensorsReader, type TensorInfo, type TensorEntry, type WriteSafetensorsOptions, type WriteSafetensorsResult,
} from './formats/safetensors';
export { readHfConfig, type ModelConfig } from './formats/hf-config';
export { parseGptqConfig, decodeGptqModule, decodeAwqModule, gptqQuantizationConfig, type GptqConfig as GptqCheckpointConfig, type DecodedModule } from './formats/gptq';
export { setKernelMode, getKernelMode, hasAddon, loadAttempts, type KernelMode, type NativeInfo, type LoadAttempt } from './native';
export { systemInfo, setThreads, cudaInfo, type SystemInfo } from './ops/system';
export { loadModel, LanguageModel, type LoadModelOptions, type GenerateOptions, type GenerateResult, type RuntimeConfig, type RuntimeQuantization } from './runtime/model';
export { evaluate, type EvaluateOptions, type EvaluateResult } from './runtime/evaluate';
export { Sampler, XorShift, type SamplerOptions } from './runtime/sampler';
export { gemm, type GemmOptions } from './ops/gemm';
export { Tokenizer, type Vocab, type TextTokenizer } from './runtime/tokenizer';
export { HfTokenizer } from './runtime/tokenizer-hf';
export { readLlama2cModel, readLlama2cTokenizer, type Llama2cModel } from './formats/llama2c';
export { readGguf, ggufLlamaConfig, ggufVocab, type GgufFile } from './formats/gguf';
export { writeHfFromLlama2c } from './formats/convert';
export { measureActScales, type MeasureActScalesOptions } from './runtime/act-scales';
export { calibrate, calibrationPeakBytes, type CalibrateOptions, type CalibrationResult, type LayerStats, type InputStats, type LayerTools } from './runtime/calibrate';
export { gptqLayer, type GptqLayerOptions, type GptqLayerResult } from './ops/gptq';
export { writeGguf, buildLlamaGgufSpec, type GgufWriteSpec, type LlamaGgufSpec } from './formats/gguf-write';
export { encodeQ8_0, encodeQ4_0, encodeQ4_1, decodeGgml } from './formats/ggml-blocks';
export { exportGguf, GGUF_EXPORT_TYPES, type ExportGgufOptions, type ExportGgufResult, type GgufExportType } from './pipeline/gguf-export';
export { qmatmulGptq4, type GptqInt4Weights, type QmatmulOptions } from './ops/qmatmul';
export { enqueue, getJob, listJobs, waitForJob, cancel, type EnqueueOptions, type EnqueueResult, type JobStatus, type JobState, type ListJobsOptions, type WaitForJobOptions, type CancelResult } from './queue/client';
export { startWorker, QueueWorker, type StartWorkerOptions, type WorkerEvent } from './queue/worker';
export { startDashboard, type Dashboard, type DashboardOptions } from './queue/dashboard';
export { JOB_KINDS, type JobKind, type JobData, type QuantizeJobData, type EvalJobData, type ExportJobData } from './queue/job';
export { DEFAULT_QUEUE, type QueueCallOptions } from './queue/connection';
export type { JobResult } from './queue/run';
