/** Caps on the JSON files of a model folder, wherever the folder is read from (disk or memory). */

/** Cap on config.json and tokenizer_config.json (real ones are a few KB). */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024
/** Cap on tokenizer.json and model.safetensors.index.json (real ones are tens of MB at most). */
export const MAX_JSON_BYTES = 256 * 1024 * 1024
