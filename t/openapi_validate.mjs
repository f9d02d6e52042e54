// t/openapi_validate.mjs FILE: validate an OpenAPI document with
// @seriousme/openapi-schema-validator (OpenAPI 3.0 and 3.1 JSON Schemas);
// prints the result as JSON, exits 0 when valid, 1 when not.  Run by
// t/106_http_openapi.pl with NODE_PATH pointing at a fresh npm install.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const { Validator } = require("@seriousme/openapi-schema-validator");
const validator = new Validator();
const result = await validator.validate(JSON.parse(readFileSync(process.argv[2], "utf8")));
console.log(JSON.stringify({ valid: result.valid, version: validator.version, errors: result.errors ?? null }));
process.exit(result.valid ? 0 : 1);
