/**
 * Connect forms for credential services, generated from the connector's zod 4 `credentials`
 * schema: one field per key of the object shape, labelled with its `.describe()` text; optional
 * and defaulted fields are not required; booleans are checkboxes, enums selects, numbers number
 * inputs; secrets (described "(secret…)" or named like a password, secret, token or key) are
 * password inputs whose values are never written back into a page.
 */
import * as z from 'zod';

export type FieldKind = 'text' | 'password' | 'number' | 'checkbox' | 'select';

export interface FormField {
  name: string;
  label: string;
  kind: FieldKind;
  required: boolean;
  secret: boolean;
  options?: string[];
  defaultValue?: string | number | boolean;
}

interface ZodDefLike {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  defaultValue?: unknown;
  entries?: Record<string, string | number>;
  values?: unknown[];
  options?: z.ZodType[];
}

const defOf = (schema: z.ZodType) => (schema as unknown as { def: ZodDefLike }).def;

const SECRET_DESCRIPTION = /\(\s*secret\b[^)]*\)/i;
const SECRET_NAME = /(password|passwd|secret|token)/i;
const KEY_NAME = /(^|_)key$/i;

function humanize(name: string): string {
  const text = name.replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** The object shapes a credentials schema is made of (an object, a pipe into one, or a union of them). */
function shapesOf(schema: z.ZodType): Array<Record<string, z.ZodType>> {
  const def = defOf(schema);
  if (schema instanceof z.ZodObject) return [schema.shape as Record<string, z.ZodType>];
  if (def.type === 'pipe' && def.in) return shapesOf(def.in);
  if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable') && def.innerType)
    return shapesOf(def.innerType);
  if (def.type === 'union' && def.options) return def.options.flatMap(shapesOf);
  return [];
}

function describeField(name: string, schema: z.ZodType): FormField {
  let current: z.ZodType = schema;
  let description = schema.description;
  let required = true;
  let defaultValue: unknown;
  for (let depth = 0; depth < 20; depth++) {
    const def = defOf(current);
    if (
      def.type === 'optional' ||
      def.type === 'nullable' ||
      def.type === 'default' ||
      def.type === 'prefault' ||
      def.type === 'catch'
    ) {
      required = false;
      if ((def.type === 'default' || def.type === 'prefault') && defaultValue === undefined)
        defaultValue = def.defaultValue;
    } else if (def.type !== 'readonly' && def.type !== 'pipe') {
      break;
    }
    const next = def.type === 'pipe' ? def.in : def.innerType;
    if (!next) break;
    current = next;
    description ??= current.description;
  }
  const def = defOf(current);
  const secret = SECRET_DESCRIPTION.test(description ?? '') || SECRET_NAME.test(name) || KEY_NAME.test(name);
  const label =
    (description ?? '')
      .replace(SECRET_DESCRIPTION, '')
      .replace(/\s+([,;.])/g, '$1')
      .trim() || humanize(name);
  const field: FormField = { name, label, kind: secret ? 'password' : 'text', required, secret };
  if (def.type === 'boolean') field.kind = 'checkbox';
  else if (def.type === 'number' || def.type === 'int' || def.type === 'bigint')
    field.kind = secret ? 'password' : 'number';
  else if (def.type === 'enum' && def.entries) {
    field.kind = 'select';
    field.options = Object.values(def.entries).map(String);
  } else if (def.type === 'literal' && def.values) {
    field.kind = 'select';
    field.options = def.values.map(String);
  }
  // A checkbox left unticked is `false`, never a missing field.
  if (field.kind === 'checkbox') field.required = false;
  if (
    typeof defaultValue === 'string' ||
    typeof defaultValue === 'number' ||
    typeof defaultValue === 'boolean'
  ) {
    field.defaultValue = defaultValue;
  }
  return field;
}

/** The form fields of a connector's credentials, in declaration order. */
export function credentialFields(schema: z.ZodType): FormField[] {
  const shapes = shapesOf(schema);
  const fields = new Map<string, FormField>();
  for (const shape of shapes) {
    for (const [name, fieldSchema] of Object.entries(shape)) {
      const field = describeField(name, fieldSchema);
      const seen = fields.get(name);
      if (!seen) fields.set(name, field);
      else seen.required &&= field.required;
    }
  }
  // In a union a field is required only when every alternative requires it.
  if (shapes.length > 1) {
    for (const field of fields.values())
      if (!shapes.every((s) => name(s, field.name))) field.required = false;
  }
  return [...fields.values()];
}

const name = (shape: Record<string, z.ZodType>, key: string) => Object.hasOwn(shape, key);

/** Form values as the credentials object the schema parses: empty inputs are absent, checkboxes booleans. */
export function credentialsFromForm(
  fields: FormField[],
  form: Record<string, string>,
): Record<string, unknown> {
  const credentials: Record<string, unknown> = {};
  for (const field of fields) {
    const value = form[field.name];
    if (field.kind === 'checkbox') {
      credentials[field.name] = value !== undefined && value !== '' && value !== 'false' && value !== '0';
      continue;
    }
    if (value === undefined || value === '') continue;
    if (field.kind === 'number' && /^-?\d+(\.\d+)?$/.test(value.trim()))
      credentials[field.name] = Number(value.trim());
    else credentials[field.name] = value;
  }
  return credentials;
}

/** Values to show in the form: pre-fill data, defaults, what was typed — never a secret. */
export function displayValues(
  fields: FormField[],
  ...sources: Array<Record<string, unknown> | undefined>
): Record<string, string | boolean> {
  const values: Record<string, string | boolean> = {};
  for (const field of fields) {
    if (field.secret) continue;
    let value: unknown = field.defaultValue;
    for (const source of sources)
      if (source && source[field.name] !== undefined && source[field.name] !== null)
        value = source[field.name];
    if (field.kind === 'checkbox') {
      if (value !== undefined)
        values[field.name] = value === true || value === 'true' || value === 'on' || value === '1';
    } else if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') {
      values[field.name] = String(value);
    }
  }
  return values;
}
