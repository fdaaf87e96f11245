#!/usr/bin/env node
// Runs the TypeScript sources of the `canopy` command line through tsx.
import { register } from "tsx/esm/api"
register()
await import("../src/cli/main.ts")
