// Unit tests of the inspector's pure helpers (static/format.js), run with
// node's test runner by browser_test.go (or: node --test format.test.mjs).
// The curl tests run the generated command with bash and curl against a
// local server and compare what arrives byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import {
  bodyKind, bytesToBase64, curlCommand, escapeBytes, formatBytes, formatDuration, headerText, hexDump, parseForm,
  prettyJSON, prettyXML, segmentsText, shellQuote, timeKey,
} from '../static/format.js';

test('prettyJSON indents like JSON.stringify and keeps tokens exact', () => {
  const v = { a: 1, b: [true, null, 'x'], c: {}, d: [], e: { f: 'say "hi"' } };
  assert.equal(segmentsText(prettyJSON(JSON.stringify(v))), JSON.stringify(v, null, 2));
  // Big numbers and escapes stay as the sender wrote them.
  const text = '{"id": 12345678901234567890, "s": "\\u00e9\\n", "f": 1.50}';
  assert.equal(segmentsText(prettyJSON(text)), '{\n  "id": 12345678901234567890,\n  "s": "\\u00e9\\n",\n  "f": 1.50\n}');
  const kinds = prettyJSON('{"k": "v", "n": -2, "t": true}').map((s) => s.t).filter((t) => t !== 'ws' && t !== 'punct');
  assert.deepEqual(kinds, ['key', 'string', 'key', 'number', 'key', 'literal']);
  assert.equal(prettyJSON('{"a":'), null);
  assert.equal(prettyJSON('hello'), null);
  assert.equal(segmentsText(prettyJSON('[ ]')), '[]');
  assert.equal(segmentsText(prettyJSON('"a\\"b"')), '"a\\"b"');
});

test('timeKey orders RFC 3339 times to the nanosecond', () => {
  const times = [
    '2026-11-26T10:57:25Z',
    '2026-11-26T10:57:25.000000001Z',
    '2026-11-26T10:57:25.1Z',
    '2026-11-26T10:57:25.12Z',
    '2026-11-26T11:57:25.123456789+01:00', // the same instant as the next, a few ns before
    '2026-11-26T10:57:25.12345679Z',
    '2026-11-26T10:57:26Z',
    '2026-12-01T00:00:00Z',
  ];
  const keys = times.map(timeKey);
  for (let i = 1; i < keys.length; i++) assert.ok(keys[i - 1] < keys[i], `${times[i - 1]} before ${times[i]}: ${keys[i - 1]} ${keys[i]}`);
  assert.equal(timeKey('not a time'), '');
});

test('parseForm keeps order and repeats', () => {
  assert.deepEqual(parseForm('a=1&b=two+words&a=%C3%A9&empty='), [['a', '1'], ['b', 'two words'], ['a', 'é'], ['empty', '']]);
});

test('prettyXML indents elements and keeps text inline', () => {
  const xml = '<?xml version="1.0"?><root a="1"><item>one</item><item/><!-- c --><x><![CDATA[<raw>]]></x><e></e></root>';
  assert.equal(prettyXML(xml), [
    '<?xml version="1.0"?>', '<root a="1">', '  <item>one</item>', '  <item/>', '  <!-- c -->',
    '  <x>', '    <![CDATA[<raw>]]>', '  </x>', '  <e></e>', '</root>'].join('\n'));
  assert.equal(prettyXML('<a><b></a>'), null);
  assert.equal(prettyXML('not xml'), null);
});

test('hexDump shows offsets, bytes and ASCII', () => {
  const bytes = new Uint8Array([0x48, 0x69, 0x00, 0xff, ...new TextEncoder().encode('0123456789abcdefXY')]);
  const lines = hexDump(bytes).split('\n');
  assert.equal(lines.length, 2);
  assert.equal(lines[0], '00000000  48 69 00 ff 30 31 32 33  34 35 36 37 38 39 61 62  |Hi..0123456789ab|');
  assert.match(lines[1], /^00000010  63 64 65 66 58 59 {2}/);
  assert.match(hexDump(new Uint8Array(40), 16), /24 more bytes/);
});

test('bodyKind', () => {
  const ev = (ctype, body, enc) => ({ size: body.length, body, body_encoding: enc, headers: ctype ? [{ name: 'Content-Type', value: ctype }] : [] });
  assert.equal(bodyKind(ev('application/json', '{"a":1}')), 'json');
  assert.equal(bodyKind(ev('', '[1]')), 'json');
  assert.equal(bodyKind(ev('application/json', '{oops')), 'text');
  assert.equal(bodyKind(ev('application/x-www-form-urlencoded', 'a=1')), 'form');
  assert.equal(bodyKind(ev('text/xml', '<a/>')), 'xml');
  assert.equal(bodyKind(ev('application/octet-stream', 'AAE=', 'base64')), 'binary');
  assert.equal(bodyKind(ev('text/plain', 'hi')), 'text');
  assert.equal(bodyKind({ size: 0, headers: [] }), 'empty');
});

test('formats', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(25 << 20), '25 MiB');
  assert.equal(formatDuration(0.25), '0.3 ms');
  assert.equal(formatDuration(12.4), '12 ms');
  assert.equal(formatDuration(1500), '1.50 s');
});

test('shellQuote', () => {
  assert.equal(shellQuote('plain-word_1.2'), 'plain-word_1.2');
  assert.equal(shellQuote("it's"), "'it'\\''s'");
  assert.equal(shellQuote('a\tb', true), "'a\tb'");
  assert.equal(shellQuote('a\rb\x00'), "$'a\\x0db\\x00'");
  assert.equal(shellQuote(''), "''");
});

test('header values that are not UTF-8 are shown escaped', () => {
  assert.equal(headerText({ name: 'X', value: 'plain \\ text' }), 'plain \\ text');
  assert.equal(headerText({ name: 'X', value: 'a\ufffdb', value_base64: 'Yf9i' }), 'a\\xffb');
  const bytes = (...b) => new Uint8Array(b);
  assert.equal(escapeBytes(bytes(0x63, 0x61, 0x66, 0xc3, 0xa9)), 'caf\u00e9'); // valid UTF-8 stays text
  assert.equal(escapeBytes(bytes(0xe9, 0x5c, 0x41)), '\\xe9\\\\A'); // Latin-1 byte, backslash
  assert.equal(escapeBytes(bytes(0xe2, 0x82)), '\\xe2\\x82'); // cut sequence
  assert.equal(escapeBytes(bytes(0xc0, 0xaf)), '\\xc0\\xaf'); // overlong
  assert.equal(escapeBytes(bytes(0xed, 0xa0, 0x80)), '\\xed\\xa0\\x80'); // surrogate
  assert.equal(escapeBytes(bytes(0xf0, 0x9f, 0x98, 0x80)), '\u{1f600}');
});

// run runs a command with bash, as a pasted script (on stdin: a command
// line may be longer than exec allows), and returns its stdout.
function run(cmd) {
  return new Promise((resolve, reject) => {
    const child = execFile('bash', ['-s'], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout)));
    child.stdin.end(cmd);
  });
}

// capture serves one request and reports its method, URL, raw headers and body.
async function capture(fn) {
  let got;
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      got = { method: req.method, url: req.url, headers: req.rawHeaders, body: Buffer.concat(chunks) };
      res.end('ok');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await fn(`http://127.0.0.1:${server.address().port}/h/chan`);
  } finally {
    server.close();
  }
  return got;
}

function pairs(raw) {
  const out = [];
  for (let i = 0; i < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}

const cases = [
  {
    name: 'JSON with quotes, unicode and newlines',
    method: 'POST', path: '/github', query: 'x=1&y=%20two',
    headers: [['Host', 'relay'], ['User-Agent', 'GitHub-Hookshot/abc'], ['Content-Type', 'application/json'], ['X-GitHub-Event', 'push'], ['X-Hub-Signature-256', 'sha256=ab'], ['Content-Length', '0']],
    body: Buffer.from(JSON.stringify({ msg: "it's $(rm -rf /) `x` \\ \"q\"\n\ttab", u: 'é😀', n: 12345678901234567890 }), 'utf8'),
  },
  {
    name: 'binary with NUL and CR bytes',
    method: 'PUT', path: '/bin/%2Fescaped/../x', query: '',
    headers: [['content-type', 'application/octet-stream'], ['X-Empty', ''], ['X-Dup', 'a'], ['X-Dup', 'b'], ['Accept', 'application/json']],
    body: Buffer.concat([Buffer.from([0, 1, 2, 13, 10, 255, 254, 39, 92]), crypto.randomBytes(3000)]),
  },
  {
    name: 'no body',
    method: 'DELETE', path: '/', query: 'a[]=1&b={x}',
    headers: [['X-Thing', 'v']],
    body: Buffer.alloc(0),
  },
  {
    name: 'header values that are not UTF-8',
    method: 'POST', path: '/sig', query: '',
    headers: [['X-Sig', Buffer.from([0x61, 0xff, 0x62])], ['X-Quote', Buffer.from([0x27, 0x5c, 0xe9])], ['Content-Type', 'text/plain']],
    body: Buffer.from('signed'),
  },
  {
    name: 'large text body over one MiB (no Expect: 100-continue)',
    method: 'POST', path: '/big', query: '',
    headers: [['Content-Type', 'text/plain']],
    body: Buffer.from('line of text\n'.repeat(100000)),
  },
];

for (const c of cases) {
  test(`curlCommand reproduces the request exactly: ${c.name}`, async () => {
    const utf8 = (() => {
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(c.body);
      } catch {
        return null;
      }
    })();
    const got = await capture(async (base) => {
      const ev = {
        method: c.method, path: c.path, query: c.query, size: c.body.length,
        headers: c.headers.map(([name, value]) => (Buffer.isBuffer(value)
          ? { name, value: value.toString('utf8'), value_base64: value.toString('base64') }
          : { name, value })),
        body: utf8 !== null ? utf8 : bytesToBase64(new Uint8Array(c.body)),
        body_encoding: utf8 !== null ? 'utf8' : 'base64',
      };
      await run(curlCommand(ev, base));
    });
    assert.equal(got.method, c.method);
    assert.equal(got.url, `/h/chan${c.path}${c.query ? `?${c.query}` : ''}`);
    assert.equal(crypto.createHash('sha256').update(got.body).digest('hex'), crypto.createHash('sha256').update(c.body).digest('hex'));
    // node reads header bytes as latin1: one character per byte.
    const want = c.headers.filter(([n]) => !/^(host|content-length)$/i.test(n))
      .map(([n, v]) => [n, Buffer.isBuffer(v) ? v.toString('latin1') : v]);
    const sent = pairs(got.headers).filter(([n]) => !/^(host|content-length)$/i.test(n));
    assert.deepEqual(sent, want);
  });
}
