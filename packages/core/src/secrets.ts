// Filled in by the foundation work; see packages/core/README.md.
export {};
