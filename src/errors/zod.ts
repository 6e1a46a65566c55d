// A zod validation failure in words: each field's path and what is wrong with it.
export interface ZodIssues {
  issues: { path: PropertyKey[]; message: string }[];
}

export function describeZodError(error: ZodIssues): string {
  return error.issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : 'body'}: ${i.message}`).join('; ');
}
