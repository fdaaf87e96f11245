/**
 * The tensors of a Llama-family checkpoint: Hugging Face names, the shapes
 * config.json implies, and the scale synthetic weights are drawn with.
 */
import { type ModelConfig, parseModelConfig } from "./config.ts"
import { ModelConfigError, TensorShapeMismatch } from "./errors.ts"

export type TensorRole = "embedding" | "norm" | "projection" | "residual-projection" | "bias" | "lm-head"

export interface TensorSpec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly role: TensorRole
}

export const layerPrefix = (layer: number): string => `model.layers.${layer}.`

/** Every tensor the architecture reads, in a fixed order (its index is the synthetic tensor id). */
export const tensorSpecs = (c: ModelConfig): ReadonlyArray<TensorSpec> => {
  const qDim = c.numHeads * c.headDim
  const kvDim = c.numKvHeads * c.headDim
  const specs: Array<TensorSpec> = [{ name: "model.embed_tokens.weight", shape: [c.vocabSize, c.hiddenSize], role: "embedding" }]
  for (let l = 0; l < c.numLayers; l++) {
    const p = layerPrefix(l)
    specs.push(
      { name: `${p}input_layernorm.weight`, shape: [c.hiddenSize], role: "norm" },
      { name: `${p}self_attn.q_proj.weight`, shape: [qDim, c.hiddenSize], role: "projection" },
      { name: `${p}self_attn.k_proj.weight`, shape: [kvDim, c.hiddenSize], role: "projection" },
      { name: `${p}self_attn.v_proj.weight`, shape: [kvDim, c.hiddenSize], role: "projection" }
    )
    if (c.attentionBias) {
      specs.push(
        { name: `${p}self_attn.q_proj.bias`, shape: [qDim], role: "bias" },
        { name: `${p}self_attn.k_proj.bias`, shape: [kvDim], role: "bias" },
        { name: `${p}self_attn.v_proj.bias`, shape: [kvDim], role: "bias" }
      )
    }
    specs.push(
      { name: `${p}self_attn.o_proj.weight`, shape: [c.hiddenSize, qDim], role: "residual-projection" },
      { name: `${p}post_attention_layernorm.weight`, shape: [c.hiddenSize], role: "norm" },
      { name: `${p}mlp.gate_proj.weight`, shape: [c.intermediateSize, c.hiddenSize], role: "projection" },
      { name: `${p}mlp.up_proj.weight`, shape: [c.intermediateSize, c.hiddenSize], role: "projection" },
      { name: `${p}mlp.down_proj.weight`, shape: [c.hiddenSize, c.intermediateSize], role: "residual-projection" }
    )
  }
  specs.push({ name: "model.norm.weight", shape: [c.hiddenSize], role: "norm" })
  if (!c.tieWordEmbeddings) specs.push({ name: "lm_head.weight", shape: [c.vocabSize, c.hiddenSize], role: "lm-head" })
  return specs
}

export const elementCount = (shape: ReadonlyArray<number>): number => shape.reduce((a, b) => a * b, 1)

/** Matrices are held in the model's weight type; norms and biases stay f32 (small, and read as f32 everywhere). */
export const isMatrix = (spec: TensorSpec): boolean => spec.role !== "norm" && spec.role !== "bias"

/**
 * Uniform half-width (and centre) of a synthetic tensor: projections keep unit
 * variance (a = √(3/in)); the ones that feed the residual stream are shrunk by
 * √(2·layers) so the stream stays O(1) through depth; norms sit near 1.
 */
export const syntheticScale = (c: ModelConfig, spec: TensorSpec): { readonly scale: number; readonly offset: number } => {
  const fanIn = spec.shape[spec.shape.length - 1]!
  switch (spec.role) {
    case "embedding":
      return { scale: 1, offset: 0 }
    case "norm":
      return { scale: 0.1, offset: 1 }
    case "bias":
      return { scale: 0.1, offset: 0 }
    case "projection":
    case "lm-head":
      return { scale: Math.sqrt(3 / fanIn), offset: 0 }
    case "residual-projection":
      return { scale: Math.sqrt(3 / fanIn) / Math.sqrt(2 * c.numLayers), offset: 0 }
  }
}

/** Tensor shapes by name, as a folder's safetensors headers give them. */
export type TensorShapes = ReadonlyMap<string, ReadonlyArray<number>>

/** Checks that `shapes` has every tensor of `c` with the expected shape. */
export const checkShapes = (c: ModelConfig, shapes: TensorShapes): void => {
  for (const spec of tensorSpecs(c)) {
    const actual = shapes.get(spec.name)
    if (actual === undefined || actual.length !== spec.shape.length || actual.some((d, i) => d !== spec.shape[i])) {
      throw new TensorShapeMismatch({ tensor: spec.name, expected: spec.shape, actual })
    }
  }
}

/** The layers that tensors named model.layers.N.* exist for. */
export interface LayerSummary {
  readonly present: ReadonlySet<number>
  /** the highest N, -1 when there are none */
  readonly last: number
}

const LAYER_NAME = /^model\.layers\.(0|[1-9][0-9]*)\./

export const layerSummary = (names: Iterable<string>): LayerSummary => {
  const present = new Set<number>()
  let last = -1
  for (const name of names) {
    const m = LAYER_NAME.exec(name)
    if (m === null) continue
    const layer = Number(m[1])
    present.add(layer)
    if (layer > last) last = layer
  }
  return { present, last }
}

export const describeLayers = ({ present, last }: LayerSummary): string =>
  present.size === 0 ? "no model.layers.* tensors"
  : present.size === 1 && last === 0 ? "1 layer, model.layers.0"
  : present.size === last + 1 ? `${present.size} layers, model.layers.0 to model.layers.${last}`
  : `${present.size} ${present.size === 1 ? "layer" : "layers"}, some of model.layers.0 to model.layers.${last}`

const EMBED = "model.embed_tokens.weight"
const GATE = `${layerPrefix(0)}mlp.gate_proj.weight`
const Q = `${layerPrefix(0)}self_attn.q_proj.weight`
const K = `${layerPrefix(0)}self_attn.k_proj.weight`

const describeTensor = (shapes: TensorShapes, name: string): string => {
  const shape = shapes.get(name)
  return shape === undefined ? `${name} is absent` : `${name} is [${shape.join(", ")}]`
}

/**
 * What the tensors say about a config.json size field (undefined for fields
 * no tensor fixes), for errors about that field.
 */
export const tensorEvidence = (shapes: TensorShapes): (field: string) => string | undefined => {
  let layers: string | undefined
  return (field) => {
    switch (field) {
      case "num_hidden_layers":
        return (layers ??= describeLayers(layerSummary(shapes.keys())))
      case "hidden_size":
      case "vocab_size":
        return describeTensor(shapes, EMBED)
      case "intermediate_size":
        return describeTensor(shapes, GATE)
      case "num_attention_heads":
        return describeTensor(shapes, Q)
      case "num_key_value_heads":
        return describeTensor(shapes, K)
      case "head_dim":
        return `${describeTensor(shapes, Q)}, ${describeTensor(shapes, K)}`
      default:
        return undefined
    }
  }
}

/** A matrix's shape when it has rank 2. */
const matrix = (shapes: TensorShapes, name: string): readonly [number, number] | undefined => {
  const shape = shapes.get(name)
  return shape?.length === 2 ? [shape[0]!, shape[1]!] : undefined
}

/**
 * Checks config.json's sizes against the tensors present: the layers numbered
 * 0 to num_hidden_layers - 1 and no others, and the sizes the embedding and
 * layer 0's projections fix. A mismatch is a ModelConfigError naming the
 * field, its value and the tensors; checkShapes then checks every tensor.
 */
export const checkConfigAgainstTensors = (c: ModelConfig, shapes: TensorShapes): void => {
  const evidence = tensorEvidence(shapes)
  const mismatch = (field: string, reason: string): never => {
    throw new ModelConfigError({ field, reason, tensors: evidence(field) })
  }
  const layers = layerSummary(shapes.keys())
  if (layers.last >= c.numLayers) mismatch("num_hidden_layers", `${c.numLayers} leaves model.layers.${layers.last} unused`)
  // Stops at the first absent layer, which is at most the number present.
  for (let l = 0; l < c.numLayers; l++) {
    if (!layers.present.has(l)) mismatch("num_hidden_layers", `${c.numLayers} declares model.layers.${l}, which has no tensors`)
  }
  const embed = matrix(shapes, EMBED)
  if (embed !== undefined && embed[1] !== c.hiddenSize) mismatch("hidden_size", `${c.hiddenSize} does not match the tensors`)
  if (embed !== undefined && embed[0] !== c.vocabSize) mismatch("vocab_size", `${c.vocabSize} does not match the tensors`)
  const gate = matrix(shapes, GATE)
  if (gate !== undefined && gate[0] !== c.intermediateSize) mismatch("intermediate_size", `${c.intermediateSize} does not match the tensors`)
  const q = matrix(shapes, Q)
  const k = matrix(shapes, K)
  const qRows = c.numHeads * c.headDim
  const kRows = c.numKvHeads * c.headDim
  if (q !== undefined && k !== undefined && q[0] !== qRows && k[0] !== kRows &&
    q[0] % c.numHeads === 0 && k[0] % c.numKvHeads === 0 && q[0] / c.numHeads === k[0] / c.numKvHeads) {
    // Both projections agree on another head size: head_dim is what is off.
    mismatch("head_dim", `${c.headDim} (with num_attention_heads ${c.numHeads}, num_key_value_heads ${c.numKvHeads}) does not match the tensors`)
  }
  if (q !== undefined && q[0] !== qRows) {
    mismatch("num_attention_heads", `${c.numHeads} heads × head_dim ${c.headDim} = ${qRows} rows does not match the tensors`)
  }
  if (k !== undefined && k[0] !== kRows) {
    mismatch("num_key_value_heads", `${c.numKvHeads} heads × head_dim ${c.headDim} = ${kRows} rows does not match the tensors`)
  }
}

/**
 * config.json (`json`, and its `text` for quoting values as written) parsed
 * against the tensors of its checkpoint: field by field, then every tensor's
 * shape. Used for a folder on disk and one held in memory alike.
 */
export const parseConfigForTensors = (
  json: unknown,
  text: string,
  tensors: ReadonlyMap<string, { readonly shape: ReadonlyArray<number> }>
): ModelConfig => {
  const shapes = new Map<string, ReadonlyArray<number>>()
  for (const [name, info] of tensors) shapes.set(name, info.shape)
  const config = parseModelConfig(json, { text, tensors: tensorEvidence(shapes) })
  checkConfigAgainstTensors(config, shapes)
  checkShapes(config, shapes)
  return config
}
