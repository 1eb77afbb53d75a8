// Pure helpers of the inspector: body pretty-printers, the hex dump, the
// curl command and number formats. No DOM here, so node's test runner
// checks them (server/ui/browsertest/format.test.mjs).

/** Decodes standard base64 to bytes. */
export function base64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** Encodes bytes as standard base64. */
export function bytesToBase64(bytes) {
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** The bytes of an API body ({body, body_encoding}). */
export function bodyBytes(ev) {
  if (!ev.body) return new Uint8Array(0);
  return ev.body_encoding === 'base64' ? base64ToBytes(ev.body) : new TextEncoder().encode(ev.body);
}

/**
 * The text to show for a header value ({name, value, value_base64} from the
 * API). A value that is not valid UTF-8 comes with its exact bytes in
 * value_base64: it is shown with each byte that is not part of valid UTF-8
 * as \xHH and a backslash as \\, so "a\xffb" reads as sent.
 */
export function headerText(h) {
  return h.value_base64 ? escapeBytes(base64ToBytes(h.value_base64)) : h.value;
}

/** Bytes as text, with \xHH for each byte outside valid UTF-8 and \\ for "\". */
export function escapeBytes(bytes) {
  const dec = new TextDecoder();
  let out = '';
  for (let i = 0; i < bytes.length;) {
    const n = utf8Length(bytes, i);
    if (n === 0) {
      out += '\\x' + bytes[i].toString(16).padStart(2, '0');
      i++;
    } else {
      const s = dec.decode(bytes.subarray(i, i + n));
      out += s === '\\' ? '\\\\' : s;
      i += n;
    }
  }
  return out;
}

/** The length of the valid UTF-8 sequence at bytes[i] (RFC 3629), or 0. */
function utf8Length(bytes, i) {
  const b = bytes[i];
  const cont = (j, lo = 0x80, hi = 0xbf) => i + j < bytes.length && bytes[i + j] >= lo && bytes[i + j] <= hi;
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b >= 0xe0 && b <= 0xef) {
    const lo = b === 0xe0 ? 0xa0 : 0x80;
    const hi = b === 0xed ? 0x9f : 0xbf;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (b >= 0xf0 && b <= 0xf4) {
    const lo = b === 0xf0 ? 0x90 : 0x80;
    const hi = b === 0xf4 ? 0x8f : 0xbf;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

/**
 * A key that orders events by when they were received: an RFC 3339 time with
 * up to nanoseconds, as the API gives it, made fixed-width so that keys
 * compare as strings (a later time has a greater key). Cursors are opaque
 * and do not order anything; this does.
 */
export function timeKey(rfc3339) {
  const m = /^(.+T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(rfc3339 || '');
  if (!m) return '';
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return '';
  return `${String(ms / 1000).padStart(13, '0')}.${(m[2] || '').padEnd(9, '0')}`;
}

/** The first value of a header, matched without case, or ''. */
export function headerValue(headers, name) {
  const lower = name.toLowerCase();
  const h = (headers || []).find((x) => x.name.toLowerCase() === lower);
  return h ? h.value : '';
}

/** "1.2 KiB" */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** "0.4 ms", "12 ms", "1.3 s" */
export function formatDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return '';
  if (ms < 1) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

/**
 * Re-indents JSON text without parsing numbers or strings, so the pretty
 * view shows exactly the sender's tokens (a 64-bit id keeps every digit).
 * Returns segments [{t: 'punct'|'key'|'string'|'number'|'literal'|'ws', s}]
 * for highlighting, or null when the text is not JSON.
 */
export function prettyJSON(text, indent = '  ') {
  try {
    JSON.parse(text);
  } catch {
    return null;
  }
  const out = [];
  const stack = [];
  let expectKey = false;
  const nl = () => out.push({ t: 'ws', s: '\n' + indent.repeat(stack.length) });
  const isWS = (c) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text[i];
    if (isWS(c)) {
      i++;
    } else if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      let j = i + 1;
      while (j < n && isWS(text[j])) j++;
      if (text[j] === close) {
        out.push({ t: 'punct', s: c + close });
        i = j + 1;
        continue;
      }
      out.push({ t: 'punct', s: c });
      stack.push(c);
      nl();
      expectKey = c === '{';
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      nl();
      out.push({ t: 'punct', s: c });
      expectKey = false;
      i++;
    } else if (c === ',') {
      out.push({ t: 'punct', s: ',' });
      nl();
      expectKey = stack[stack.length - 1] === '{';
      i++;
    } else if (c === ':') {
      out.push({ t: 'punct', s: ': ' });
      i++;
    } else if (c === '"') {
      let j = i + 1;
      while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      out.push({ t: expectKey ? 'key' : 'string', s: text.slice(i, j + 1) });
      expectKey = false;
      i = j + 1;
    } else {
      let j = i;
      while (j < n && !isWS(text[j]) && !',:]}'.includes(text[j])) j++;
      const s = text.slice(i, j);
      out.push({ t: /^[-0-9]/.test(s) ? 'number' : 'literal', s });
      i = j;
    }
  }
  return out;
}

/** The text of prettyJSON's segments. */
export function segmentsText(segs) {
  return segs.map((x) => x.s).join('');
}

/** The fields of an application/x-www-form-urlencoded body, in order. */
export function parseForm(text) {
  return [...new URLSearchParams(text)];
}

/**
 * Indents XML one element per line; an element holding only text stays on
 * one line. Returns null when the text is not well-nested XML.
 */
export function prettyXML(text, indent = '  ') {
  const s = text.trim();
  if (!s.startsWith('<')) return null;
  const re = /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<\?[\s\S]*?\?>|<![^>]*>|<\/[^>]+>|<[^>]+\/>|<[^>]+>|[^<]+/g;
  const tokens = s.match(re) || [];
  if (tokens.join('') !== s) return null;
  const lines = [];
  const stack = [];
  const pad = () => indent.repeat(stack.length);
  const nameOf = (tag) => (/^<\/?\s*([^\s>/]+)/.exec(tag) || [])[1];
  for (let k = 0; k < tokens.length; k++) {
    const tok = tokens[k];
    if (!tok.startsWith('<')) {
      const t = tok.trim();
      if (t) lines.push(pad() + t);
    } else if (tok.startsWith('</')) {
      if (stack.pop() !== nameOf(tok)) return null;
      lines.push(pad() + tok);
    } else if (tok.startsWith('<?') || tok.startsWith('<!') || tok.endsWith('/>')) {
      lines.push(pad() + tok);
    } else {
      const name = nameOf(tok);
      const close = (t) => t && t.startsWith('</') && nameOf(t) === name;
      if (close(tokens[k + 1])) {
        lines.push(pad() + tok + tokens[k + 1]);
        k += 1;
      } else if (tokens[k + 1] && !tokens[k + 1].startsWith('<') && close(tokens[k + 2])) {
        lines.push(pad() + tok + tokens[k + 1].trim() + tokens[k + 2]);
        k += 2;
      } else {
        lines.push(pad() + tok);
        stack.push(name);
      }
    }
  }
  return stack.length ? null : lines.join('\n');
}

/**
 * A hex dump like `hexdump -C`: offset, 16 bytes in hex, and the printable
 * ASCII. At most max bytes are shown.
 */
export function hexDump(bytes, max = 64 * 1024) {
  const n = Math.min(bytes.length, max);
  const lines = [];
  for (let off = 0; off < n; off += 16) {
    let hex = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i === 8) hex += ' ';
      if (off + i < n) {
        const b = bytes[off + i];
        hex += b.toString(16).padStart(2, '0') + ' ';
        ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
      } else {
        hex += '   ';
      }
    }
    lines.push(`${off.toString(16).padStart(8, '0')}  ${hex} |${ascii}|`);
  }
  if (bytes.length > n) lines.push(`… ${bytes.length - n} more bytes: download the body to see them`);
  return lines.join('\n');
}

/** What kind of body a request carries, for the pretty view. */
export function bodyKind(ev) {
  if (!ev.size) return 'empty';
  if (ev.body_encoding === 'base64') return 'binary';
  const ctype = headerValue(ev.headers, 'Content-Type').toLowerCase();
  const text = ev.body || '';
  const start = text.trimStart()[0];
  if (ctype.includes('json') || start === '{' || start === '[') {
    if (prettyJSON(text)) return 'json';
  }
  if (ctype.includes('x-www-form-urlencoded')) return 'form';
  if (ctype.includes('xml') || text.trimStart().startsWith('<?xml')) {
    if (prettyXML(text) !== null) return 'xml';
  }
  return 'text';
}

/**
 * Quotes s for bash: bare when it is a plain word (unless quoted), in single quotes when
 * it is printable, else as $'…' with \xHH escapes for every other byte.
 */
export function shellQuote(s, quoted = false) {
  if (s === '') return "''";
  if (!quoted && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  if (!/[\x00-\x08\x0a-\x1f\x7f]/.test(s)) return "'" + s.replace(/'/g, "'\\''") + "'";
  return shellQuoteBytes(new TextEncoder().encode(s));
}

/** Quotes bytes for bash as $'…', with \xHH escapes for every byte but printable ASCII. */
export function shellQuoteBytes(bytes) {
  let out = "$'";
  for (const b of bytes) {
    if (b === 0x27) out += "\\'";
    else if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += '\\x' + b.toString(16).padStart(2, '0');
  }
  return out + "'";
}

// curl adds these when the request has none; an empty -H removes them.
const curlDefaults = ['User-Agent', 'Accept'];

/**
 * A bash command that sends the request again, exactly: the method, the
 * channel's ingress URL with the event's path and query, every header in
 * order (but Host and Content-Length, which curl writes), and the body
 * bytes through stdin: as text in single quotes, or as base64 when they
 * are not plain text. curl's own headers that the original lacked are
 * removed, and HTTP/1.1 keeps the header names' case.
 */
export function curlCommand(ev, channelURL) {
  const headers = ev.headers || [];
  const has = (name) => headers.some((h) => h.name.toLowerCase() === name.toLowerCase());
  const bytes = bodyBytes(ev);
  const withBody = bytes.length > 0 || has('Content-Length') || has('Transfer-Encoding');
  const args = ['curl', '--http1.1', '--path-as-is', '--globoff'];
  if (ev.method === 'HEAD') args.push('--head');
  else args.push('--request', shellQuote(ev.method));
  args.push(shellQuote(channelURL + ev.path + (ev.query ? '?' + ev.query : '')));
  const hdr = [];
  for (const name of curlDefaults) if (!has(name)) hdr.push(shellQuote(`${name}:`, true));
  if (withBody && !has('Content-Type')) hdr.push(shellQuote('Content-Type:', true));
  if (withBody && !has('Expect')) hdr.push(shellQuote('Expect:', true));
  for (const h of headers) {
    const lower = h.name.toLowerCase();
    if (lower === 'host' || lower === 'content-length') continue;
    if (h.value_base64) {
      // Not UTF-8: the exact bytes, which a JavaScript string cannot hold.
      const line = new Uint8Array([...new TextEncoder().encode(`${h.name}: `), ...base64ToBytes(h.value_base64)]);
      hdr.push(shellQuoteBytes(line));
    } else {
      hdr.push(shellQuote(h.value === '' ? `${h.name};` : `${h.name}: ${h.value}`, true));
    }
  }
  const lines = [args.join(' ')];
  for (const h of hdr) lines.push(`-H ${h}`);
  if (!withBody) return lines.join(' \\\n  ');
  lines.push('--data-binary @-');
  let feed;
  const text = ev.body_encoding === 'base64' ? null : ev.body || '';
  if (text !== null && !/[\x00-\x08\x0b-\x1f\x7f]/.test(text)) {
    feed = `printf '%s' '${text.replace(/'/g, "'\\''")}'`;
  } else {
    feed = `printf '%s' '${bytesToBase64(bytes)}' | base64 -d`;
  }
  return `${feed} \\\n  | ${lines.join(' \\\n    ')}`;
}
