/**
 * Directory listings: RFC 3659 MLSD/MLST fact lines first; `LIST` output (Unix `ls -l` and MS-DOS
 * styles) only for servers without MLST.
 */

export interface RemoteEntry {
  name: string;
  /** Symbolic links are reported so a recursive delete can unlink them; they are never listed. */
  type: 'file' | 'folder' | 'link';
  size: number | null;
  modified: Date | null;
  created: Date | null;
  /** The listing line's facts (MLSD) or the raw line (LIST), for `X-Kloudless-Raw-Data`. */
  raw: Record<string, string>;
}

/** RFC 3659 §2.3 time-val: `YYYYMMDDHHMMSS[.sss]`, always UTC. */
export function parseTimeVal(value: string | undefined): Date | null {
  const match = value ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3}))?$/.exec(value) : null;
  if (!match) return null;
  const [, y, mo, d, h, mi, s, ms] = match;
  const time = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s),
    Number((ms ?? '0').padEnd(3, '0')),
  );
  return Number.isNaN(time) ? null : new Date(time);
}

/**
 * One RFC 3659 §7.2 entry: `fact=value;fact=value; pathname`. Fact names are case-insensitive;
 * the pathname follows the single space after the last `;` and may itself contain `;` and spaces.
 */
export function parseFactLine(line: string): { facts: Record<string, string>; pathname: string } | null {
  const facts: Record<string, string> = {};
  let pos = 0;
  while (pos < line.length && line[pos] !== ' ') {
    const semi = line.indexOf(';', pos);
    if (semi < 0) return null;
    const fact = line.slice(pos, semi);
    const eq = fact.indexOf('=');
    if (eq <= 0) return null;
    facts[fact.slice(0, eq).toLowerCase()] = fact.slice(eq + 1);
    pos = semi + 1;
  }
  if (line[pos] !== ' ') return null;
  const pathname = line.slice(pos + 1);
  return pathname ? { facts, pathname } : null;
}

/** An entry from fact lines; `cdir`/`pdir` only when `allowSelf` (MLST of a folder itself). */
export function entryFromFacts(
  facts: Record<string, string>,
  name: string,
  allowSelf = false,
): RemoteEntry | null {
  const type = (facts.type ?? '').toLowerCase();
  let kind: RemoteEntry['type'];
  if (type === 'file') kind = 'file';
  // RFC 3659 §7.5.1 leaves OS types open: pure-ftpd says `OS.unix=slink:`, others `OS.unix=symlink`.
  else if (/^os\.unix=(slink|symlink)/.test(type)) kind = 'link';
  else if (type === 'dir' || (allowSelf && (type === 'cdir' || type === 'pdir'))) kind = 'folder';
  else return null;
  const size =
    kind === 'file' && facts.size !== undefined && /^\d+$/.test(facts.size) ? Number(facts.size) : null;
  return {
    name,
    type: kind,
    size: kind === 'file' ? (size ?? null) : null,
    modified: parseTimeVal(facts.modify),
    created: parseTimeVal(facts.create),
    raw: facts,
  };
}

/** MLSD data (RFC 3659 §7): one entry per line; `.`, `..` and unknown types are left out. */
export function parseMlsd(text: string): RemoteEntry[] {
  const out: RemoteEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line) continue;
    const parsed = parseFactLine(line);
    if (!parsed) continue;
    if (parsed.pathname === '.' || parsed.pathname === '..' || parsed.pathname.includes('/')) continue;
    const entry = entryFromFacts(parsed.facts, parsed.pathname);
    if (entry) out.push(entry);
  }
  return out;
}

/** The fact line of an MLST reply (RFC 3659 §7.2: the one line starting with a space). */
export function parseMlstReply(lines: string[]): RemoteEntry | null {
  for (const line of lines) {
    if (!line.startsWith(' ')) continue;
    const parsed = parseFactLine(line.slice(1));
    if (!parsed) continue;
    const name = parsed.pathname.split('/').filter(Boolean).at(-1) ?? '';
    return entryFromFacts(parsed.facts, name, true);
  }
  return null;
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

// `drwxr-xr-x  2 owner group  4096 Dec  4 04:03 name` or `... Dec  4  2025 name`
const UNIX_LINE = new RegExp(
  '^([-dlbcps])[-rwxsStTl@+.]{9,10}\\s+\\d+\\s+\\S+(?:\\s+\\S+)?\\s+(\\d+)' +
    '\\s+([A-Za-z]{3})\\s+(\\d{1,2})\\s+(\\d{1,2}:\\d{2}|\\d{4})\\s(.+)$',
);
// `12-04-26  04:03PM       <DIR>          name` / `12-04-26  04:03PM            1234 name`
const DOS_LINE = /^(\d{2})-(\d{2})-(\d{2,4})\s+(\d{1,2}):(\d{2})(AM|PM)\s+(<DIR>|\d+)\s+(.+)$/i;

/**
 * `LIST` output (RFC 959 leaves the format to the server). Unix dates without a year are taken in
 * the year that puts them no later than `now` (UTC, minute precision).
 */
export function parseList(text: string, now: Date = new Date()): RemoteEntry[] {
  const out: RemoteEntry[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!line || /^total\s+\d+/i.test(line)) continue;
    const unix = UNIX_LINE.exec(line);
    if (unix) {
      const [, kind, size, mon, day, timeOrYear, rawName] = unix;
      if (kind !== '-' && kind !== 'd' && kind !== 'l') continue;
      // `name -> target` for links.
      const name = kind === 'l' ? rawName!.replace(/ -> .*$/, '') : rawName!;
      if (name === '.' || name === '..') continue;
      const month = MONTHS.indexOf(mon!.toLowerCase());
      let modified: Date | null = null;
      if (month >= 0) {
        if (timeOrYear!.includes(':')) {
          const [h, m] = timeOrYear!.split(':').map(Number);
          let year = now.getUTCFullYear();
          let date = Date.UTC(year, month, Number(day), h, m);
          // A date more than a day in the future belongs to last year (ls shows times for the last 6 months).
          if (date > now.getTime() + 86_400_000) date = Date.UTC(--year, month, Number(day), h, m);
          modified = new Date(date);
        } else {
          modified = new Date(Date.UTC(Number(timeOrYear), month, Number(day)));
        }
      }
      out.push({
        name,
        type: kind === 'd' ? 'folder' : kind === 'l' ? 'link' : 'file',
        size: kind === '-' ? Number(size) : null,
        modified,
        created: null,
        raw: { line },
      });
      continue;
    }
    const dos = DOS_LINE.exec(line);
    if (dos) {
      const [, mm, dd, yy, hh, mi, ampm, sizeOrDir, name] = dos;
      let year = Number(yy);
      if (yy!.length === 2) year += year < 70 ? 2000 : 1900;
      let hour = Number(hh) % 12;
      if (ampm!.toUpperCase() === 'PM') hour += 12;
      const isDir = sizeOrDir!.toUpperCase() === '<DIR>';
      out.push({
        name: name!,
        type: isDir ? 'folder' : 'file',
        size: isDir ? null : Number(sizeOrDir),
        modified: new Date(Date.UTC(year, Number(mm) - 1, Number(dd), hour, Number(mi))),
        created: null,
        raw: { line },
      });
    }
  }
  return out;
}
