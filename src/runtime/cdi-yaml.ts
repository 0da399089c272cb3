// The YAML subset CDI spec files are written in (what nvidia-ctk, DRA drivers and hand-written
// specs produce): block mappings and sequences by indentation, flow sequences and mappings on one
// line, plain, single- and double-quoted scalars (plain ones may continue on more-indented lines, as
// YAML emitters fold long strings), comments, one optional `---`. Anchors, aliases, tags, block
// scalars (| >), multi-line quoted strings and flows, and complex keys are refused with the line named,
// so a file outside the subset is skipped with a reason instead of being read wrong.

export class YamlSubsetError extends Error {
  constructor(readonly line: number, why: string) {
    super(`line ${line}: ${why}`);
  }
}

export type YamlValue = null | boolean | number | string | YamlValue[] | { [key: string]: YamlValue };

interface Line {
  no: number;
  indent: number;
  text: string;
  /** An empty line (or a comment line) came right before: a folded scalar would keep a line break there. */
  afterBlank?: boolean;
}

/** Parses one YAML document of the subset above; throws YamlSubsetError naming the line. */
export function parseYamlSubset(source: string): YamlValue {
  const lines = splitLines(source);
  if (lines.length === 0) return null;
  const cur = { i: 0 };
  const value = parseBlock(lines, cur, lines[0]!.indent);
  if (cur.i < lines.length) {
    const l = lines[cur.i]!;
    throw new YamlSubsetError(l.no, `unexpected content at indent ${l.indent}: ${JSON.stringify(l.text)}`);
  }
  return value;
}

function splitLines(source: string): Line[] {
  const out: Line[] = [];
  let docs = 0;
  let blank = false;
  const raw = source.replace(/^\uFEFF/, "").split(/\r?\n/);
  for (let n = 0; n < raw.length; n++) {
    const no = n + 1;
    const full = raw[n]!;
    const lead = /^[ \t]*/.exec(full)![0];
    if (lead.includes("\t") && full.trim() !== "") throw new YamlSubsetError(no, "tab in indentation (YAML indents with spaces)");
    const text = stripComment(full.slice(lead.length), no).trimEnd();
    if (text === "") {
      blank = true;
      continue;
    }
    if (lead.length === 0 && (text === "---" || text.startsWith("--- "))) {
      if (++docs > 1 || out.length > 0) throw new YamlSubsetError(no, "more than one YAML document");
      if (text !== "---") throw new YamlSubsetError(no, "content after --- is not supported");
      continue;
    }
    if (lead.length === 0 && text === "...") break;
    if (text.startsWith("%")) throw new YamlSubsetError(no, "YAML directives are not supported");
    out.push({ no, indent: lead.length, text, afterBlank: blank });
    blank = false;
  }
  return out;
}

/** Drops a `#` comment (at the start or after a space), leaving quoted text alone. */
function stripComment(text: string, no: number): string {
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote) {
      if (quote === '"' && c === "\\") i++;
      else if (c === quote) {
        if (quote === "'" && text[i + 1] === "'") i++;
        else quote = undefined;
      }
      continue;
    }
    if ((c === '"' || c === "'") && (i === 0 || /[\s[{,:-]/.test(text[i - 1]!))) quote = c;
    else if (c === "#" && (i === 0 || /\s/.test(text[i - 1]!))) return text.slice(0, i);
  }
  if (quote) throw new YamlSubsetError(no, `unterminated ${quote === '"' ? "double" : "single"}-quoted string (multi-line strings are not supported)`);
  return text;
}

function isSeqItem(text: string): boolean {
  return text === "-" || text.startsWith("- ");
}

/** The index of the `:` ending a mapping key on this line, or -1. */
function keyColon(text: string): number {
  if (text.startsWith('"') || text.startsWith("'")) {
    const end = quotedEnd(text, 0);
    if (end < 0) return -1;
    return text[end + 1] === ":" && (end + 2 === text.length || text[end + 2] === " ") ? end + 1 : -1;
  }
  if (text.startsWith("[") || text.startsWith("{")) return -1;
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ":" && (i + 1 === text.length || text[i + 1] === " ")) return i;
  }
  return -1;
}

/** The index of the closing quote of the quoted string starting at `start`, or -1. */
function quotedEnd(text: string, start: number): number {
  const q = text[start]!;
  for (let i = start + 1; i < text.length; i++) {
    if (q === '"' && text[i] === "\\") {
      i++;
      continue;
    }
    if (text[i] === q) {
      if (q === "'" && text[i + 1] === "'") {
        i++;
        continue;
      }
      return i;
    }
  }
  return -1;
}

function parseBlock(lines: Line[], cur: { i: number }, indent: number): YamlValue {
  const first = lines[cur.i]!;
  if (first.text === "?" || first.text.startsWith("? ")) throw new YamlSubsetError(first.no, "complex mapping keys (?) are not supported");
  if (isSeqItem(first.text)) return parseSequence(lines, cur, indent);
  if (keyColon(first.text) >= 0) return parseMapping(lines, cur, indent);
  cur.i++;
  return parseInline(first.text, first.no);
}

function parseSequence(lines: Line[], cur: { i: number }, indent: number): YamlValue[] {
  const out: YamlValue[] = [];
  while (cur.i < lines.length) {
    const l = lines[cur.i]!;
    if (l.indent < indent) break;
    if (l.indent > indent) throw new YamlSubsetError(l.no, `bad indentation: expected ${indent} spaces, got ${l.indent}`);
    if (!isSeqItem(l.text)) break;
    const rest = l.text.slice(1).trimStart();
    if (rest === "") {
      cur.i++;
      const next = lines[cur.i];
      out.push(next && next.indent > indent ? parseBlock(lines, cur, next.indent) : null);
      continue;
    }
    // "- key: v" and "- - x" open a nested node whose indent is the column after the dash.
    const col = l.indent + (l.text.length - rest.length);
    if (isSeqItem(rest) || keyColon(rest) >= 0) {
      lines[cur.i] = { no: l.no, indent: col, text: rest };
      out.push(parseBlock(lines, cur, col));
      continue;
    }
    cur.i++;
    out.push(parseInline(withContinuation(lines, cur, indent, rest), l.no));
  }
  return out;
}

/** A plain scalar folded over more-indented lines that follow it: the lines join with spaces. */
function withContinuation(lines: Line[], cur: { i: number }, indent: number, text: string): string {
  if (/^["'[{]/.test(text)) return text;
  let out = text;
  while (cur.i < lines.length && lines[cur.i]!.indent > indent) {
    const l = lines[cur.i]!;
    if (keyColon(l.text) >= 0) throw new YamlSubsetError(l.no, `a mapping cannot continue a value (check the indentation): ${JSON.stringify(l.text)}`);
    if (l.afterBlank) throw new YamlSubsetError(l.no, "a blank or comment line inside a folded scalar is not supported");
    out += ` ${l.text}`;
    cur.i++;
  }
  return out;
}

function parseMapping(lines: Line[], cur: { i: number }, indent: number): { [key: string]: YamlValue } {
  const out: { [key: string]: YamlValue } = {};
  while (cur.i < lines.length) {
    const l = lines[cur.i]!;
    if (l.indent < indent) break;
    if (l.indent > indent) throw new YamlSubsetError(l.no, `bad indentation: expected ${indent} spaces, got ${l.indent}`);
    if (isSeqItem(l.text)) break;
    if (l.text === "?" || l.text.startsWith("? ")) throw new YamlSubsetError(l.no, "complex mapping keys (?) are not supported");
    const colon = keyColon(l.text);
    if (colon < 0) throw new YamlSubsetError(l.no, `expected "key: value", got ${JSON.stringify(l.text)}`);
    const rawKey = l.text.slice(0, colon).trim();
    const key = rawKey.startsWith('"') || rawKey.startsWith("'") ? (parseInline(rawKey, l.no) as string) : rawKey;
    if (key === "<<") throw new YamlSubsetError(l.no, "merge keys (<<) are not supported");
    if (Object.hasOwn(out, key)) throw new YamlSubsetError(l.no, `duplicate key "${key}"`);
    const rest = l.text.slice(colon + 1).trim();
    cur.i++;
    if (rest !== "") {
      out[key] = parseInline(withContinuation(lines, cur, indent, rest), l.no);
      continue;
    }
    const next = lines[cur.i];
    // A sequence may sit at the key's own indent ("devices:\n- name: x").
    if (next && (next.indent > indent || (next.indent === indent && isSeqItem(next.text)))) out[key] = parseBlock(lines, cur, next.indent);
    else out[key] = null;
  }
  return out;
}

/** A scalar or a one-line flow collection. */
function parseInline(text: string, no: number): YamlValue {
  const p = { s: text, i: 0, no };
  const v = parseFlowValue(p, false);
  skipSpaces(p);
  if (p.i < p.s.length) throw new YamlSubsetError(no, `unexpected ${JSON.stringify(p.s.slice(p.i))} after a value`);
  return v;
}

interface Cursor {
  s: string;
  i: number;
  no: number;
}

function skipSpaces(p: Cursor): void {
  while (p.i < p.s.length && p.s[p.i] === " ") p.i++;
}

function parseFlowValue(p: Cursor, inFlow: boolean): YamlValue {
  skipSpaces(p);
  const c = p.s[p.i];
  if (c === undefined) return null;
  if (c === "&" || c === "*") throw new YamlSubsetError(p.no, "anchors and aliases (& *) are not supported");
  if (c === "!") throw new YamlSubsetError(p.no, "tags (!) are not supported");
  if (!inFlow && (c === "|" || c === ">")) throw new YamlSubsetError(p.no, "block scalars (| >) are not supported");
  if (c === "[") return parseFlowSeq(p);
  if (c === "{") return parseFlowMap(p);
  if (c === '"' || c === "'") return parseQuoted(p);
  // A plain scalar runs to the end of the line, or in a flow collection to the next , ] or }.
  const start = p.i;
  while (p.i < p.s.length) {
    const ch = p.s[p.i]!;
    if (inFlow && (ch === "," || ch === "]" || ch === "}")) break;
    if (inFlow && ch === ":" && (p.s[p.i + 1] === " " || p.s[p.i + 1] === undefined)) break;
    p.i++;
  }
  const raw = p.s.slice(start, p.i).trim();
  if (!inFlow && keyColon(raw) >= 0) throw new YamlSubsetError(p.no, `a mapping cannot start on the same line as its key: ${JSON.stringify(raw)}`);
  return plainScalar(raw);
}

function parseFlowSeq(p: Cursor): YamlValue[] {
  p.i++;
  const out: YamlValue[] = [];
  for (;;) {
    skipSpaces(p);
    if (p.s[p.i] === "]") {
      p.i++;
      return out;
    }
    out.push(parseFlowValue(p, true));
    skipSpaces(p);
    const c = p.s[p.i];
    if (c === ",") p.i++;
    else if (c === "]") {
      p.i++;
      return out;
    } else throw new YamlSubsetError(p.no, c === undefined ? "flow sequence not closed on its line (multi-line flow is not supported)" : `expected , or ] in a flow sequence, got ${JSON.stringify(c)}`);
  }
}

function parseFlowMap(p: Cursor): { [key: string]: YamlValue } {
  p.i++;
  const out: { [key: string]: YamlValue } = {};
  for (;;) {
    skipSpaces(p);
    if (p.s[p.i] === "}") {
      p.i++;
      return out;
    }
    const key = parseFlowValue(p, true);
    if (typeof key !== "string" && typeof key !== "number" && typeof key !== "boolean") throw new YamlSubsetError(p.no, "a flow mapping key must be a scalar");
    skipSpaces(p);
    if (p.s[p.i] !== ":") throw new YamlSubsetError(p.no, `expected : after key ${JSON.stringify(key)} in a flow mapping`);
    p.i++;
    const k = String(key);
    if (Object.hasOwn(out, k)) throw new YamlSubsetError(p.no, `duplicate key "${k}"`);
    out[k] = parseFlowValue(p, true);
    skipSpaces(p);
    const c = p.s[p.i];
    if (c === ",") p.i++;
    else if (c === "}") {
      p.i++;
      return out;
    } else throw new YamlSubsetError(p.no, c === undefined ? "flow mapping not closed on its line (multi-line flow is not supported)" : `expected , or } in a flow mapping, got ${JSON.stringify(c)}`);
  }
}

const ESCAPES: Record<string, string> = { n: "\n", t: "\t", r: "\r", "0": "\0", '"': '"', "\\": "\\", "/": "/", " ": " ", e: "\x1b", b: "\b", f: "\f", a: "\x07", v: "\v" };

function parseQuoted(p: Cursor): string {
  const end = quotedEnd(p.s, p.i);
  if (end < 0) throw new YamlSubsetError(p.no, "unterminated quoted string");
  const body = p.s.slice(p.i + 1, end);
  const q = p.s[p.i];
  p.i = end + 1;
  if (q === "'") return body.replaceAll("''", "'");
  let out = "";
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = body[++i];
    if (e === "x" || e === "u" || e === "U") {
      const len = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = body.slice(i + 1, i + 1 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw new YamlSubsetError(p.no, `bad \\${e} escape`);
      out += String.fromCodePoint(Number.parseInt(hex, 16));
      i += len;
    } else if (e !== undefined && ESCAPES[e] !== undefined) out += ESCAPES[e];
    else throw new YamlSubsetError(p.no, `unknown escape \\${e ?? ""}`);
  }
  return out;
}

/** YAML 1.2 core schema: null, booleans, integers (decimal, 0o, 0x), floats; anything else a string. */
function plainScalar(raw: string): YamlValue {
  if (raw === "" || raw === "~" || raw === "null" || raw === "Null" || raw === "NULL") return null;
  if (/^(true|True|TRUE)$/.test(raw)) return true;
  if (/^(false|False|FALSE)$/.test(raw)) return false;
  if (/^[-+]?[0-9]+$/.test(raw)) return Number.parseInt(raw, 10);
  if (/^0o[0-7]+$/.test(raw)) return Number.parseInt(raw.slice(2), 8);
  if (/^0x[0-9a-fA-F]+$/.test(raw)) return Number.parseInt(raw.slice(2), 16);
  if (/^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$/.test(raw)) return Number(raw);
  return raw;
}
