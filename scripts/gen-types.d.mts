/** Types for scripts/gen-types.mjs (imported by the unit test that checks the generated files). */
export declare const repoRoot: string;
export declare const schemaDir: string;
export declare const generatedDir: string;
export declare function generateTypes(schemaPath: string, schema?: object): Promise<string>;
export declare const vmmConfigSchemaPath: string;
export declare function vmmConfigSchema(): Promise<{ schema: object; text: string }>;
export declare function outputPathFor(schemaPath: string): string;
export declare function schemaFiles(): Promise<string[]>;
export declare function generateAll(): Promise<Map<string, string>>;
