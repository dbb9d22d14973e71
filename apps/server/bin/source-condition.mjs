// A module resolve hook that adds the `@cloudmux/source` export condition, so workspace packages
// resolve to their TypeScript source (run through tsx) instead of an unbuilt dist/.
export async function resolve(specifier, context, nextResolve) {
  const conditions = context.conditions.includes('@cloudmux/source')
    ? context.conditions
    : ['@cloudmux/source', ...context.conditions];
  return nextResolve(specifier, { ...context, conditions });
}
