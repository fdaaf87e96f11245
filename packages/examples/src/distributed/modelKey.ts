/**
 * The model of a distributed run, as the queue names it.
 */
import { modelKey } from "@canopy/queue"

/** The model a run asks for and a worker serves: the model's key, with the weights' type when --dtype sets one (it changes the samples). */
export const modelKeyOf = (model: string, dtype: string | undefined): string => (dtype === undefined ? modelKey(model) : `${modelKey(model)}@${dtype}`)
