'use strict';
// A CouchDB-compatible stand-in for docstore's tests: pouchdb-server's express-pouchdb app,
// in memory, wrapped so that it behaves like CouchDB 3 where the stand-in deviates in ways the
// provider contract depends on (DESIGN.md lists the measured deviations):
//   - credentials are required on every request (401 otherwise), as with a CouchDB admin;
//   - GET /_session reports the authenticated user, as CouchDB does;
//   - replies are JSON (the stand-in sends text/plain unless asked for JSON);
//   - DELETE of a missing database answers 404 (the stand-in answers 200);
//   - idle keep-alive connections stay open 60 s (Node closes them after 5 s);
//   - POST _all_docs with keys and include_docs answers `"doc": null` for a deleted document
//     (the stand-in's leveldb adapter throws there and the whole process dies);
//   - GET _all_docs without an end key lists every id (the stand-in silently stops before ids
//     with characters beyond U+07FF unless an end key is given);
//   - database names keep their '/' (the stand-in drops it; here it is stored as '(2f)'),
//     and _all_dbs is sorted;
//   - database info has doc_del_count, and a _changes page has pending;
//   - a write carrying the revision of a deleted document's tombstone is a conflict, as
//     CouchDB 3 requires an edit of a deleted document to start a new branch (no _rev);
//   - _find applies limit (default 25), skip, a bookmark and fields itself, over the stand-in's
//     full answer (the stand-in returns wrong rows for indexed ranges with limit/skip and has
//     no bookmark), never returns design documents, drops documents missing a sort field (a
//     CouchDB index holds only documents with its fields), and names a sort no index serves
//     no_usable_index as CouchDB does. Its string order stays UTF-16 (CouchDB: ICU), so tests
//     keep to strings both order alike there.
// Test code only: the provider never knows which server it talks to.
//
// Usage: node standin.js PORT USER PASSWORD DIR. Prints "LISTENING PORT" when ready, and
// exits when its standard input closes (so it dies with the test process that started it).

const path = require('path');
const http = require('http');

const [portText, user, password, dir] = process.argv.slice(2);
const port = Number(portText);
const express = require('express');
const PouchDB = require('pouchdb-core')
  .plugin(require('pouchdb-adapter-http'))
  .plugin(require('pouchdb-replication'))
  .plugin(require('pouchdb-mapreduce'))
  .plugin(require('pouchdb-adapter-memory'));

const pouchApp = require('express-pouchdb')({
  configPath: path.join(dir, 'config.json'),
  logPath: path.join(dir, 'log.txt'),
  mode: 'fullCouchDB',
});
pouchApp.setPouchDB(PouchDB.defaults({ adapter: 'memory' }));

const expected = 'Basic ' + Buffer.from(user + ':' + password).toString('base64');
const app = express();

app.use((req, res, next) => {
  if (req.headers['x-standin-internal'] === '1') {
    req.internal = true;
    return next();
  }
  const auth = req.headers.authorization;
  if (auth !== expected) {
    res.status(401).json({
      error: 'unauthorized',
      reason: auth ? 'Name or password is incorrect.' : 'You are not authorized to access this db.',
    });
    return;
  }
  delete req.headers.authorization;
  req.headers.accept = 'application/json';
  next();
});

// Database names with '/' are stored with '(2f)' (first path segment only; express-pouchdb
// reads the original URL, so both are rewritten).
app.use((req, res, next) => {
  const [path, query] = req.url.split('?');
  const parts = path.split('/');
  if (parts.length > 1 && SLASH.test(parts[1])) {
    parts[1] = parts[1].replace(SLASH, '%282f%29');
    req.url = parts.join('/') + (query === undefined ? '' : '?' + query);
    req.originalUrl = req.url;
  }
  SLASH.lastIndex = 0;
  next();
});

app.get('/_all_dbs', (req, res, next) => {
  if (req.internal) return next();
  selfRequest('GET', '/_all_dbs').then((r) => {
    res.status(r.status).json(Array.isArray(r.json) ? r.json.map(fromStored).sort() : r.json);
  }, next);
});

app.get('/:db', (req, res, next) => {
  if (req.internal || req.params.db.startsWith('_')) return next();
  const base = '/' + encodeURIComponent(req.params.db);
  selfRequest('GET', base).then(async (r) => {
    if (r.status === 200) {
      r.json.db_name = fromStored(r.json.db_name);
      if (r.json.doc_del_count === undefined) {
        const changes = await selfRequest('GET', base + '/_changes');
        r.json.doc_del_count = changes.json.results.filter((c) => c.deleted).length;
      }
    }
    res.status(r.status).json(r.json);
  }).catch(next);
});

app.get('/:db/_changes', (req, res, next) => {
  if (req.internal) return next();
  const base = '/' + encodeURIComponent(req.params.db) + '/_changes';
  const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
  selfRequest('GET', base + query).then(async (r) => {
    if (r.status === 200 && r.json.pending === undefined) {
      const rest = await selfRequest('GET', base + '?since=' + encodeURIComponent(r.json.last_seq));
      r.json.pending = rest.json.results.length;
    }
    res.status(r.status).json(r.json);
  }).catch(next);
});

app.put('/:db/:id', (req, res, next) => {
  if (req.internal || req.params.id.startsWith('_')) return next();
  readBody(req).then(async (raw) => {
    let rev = req.query.rev;
    try { rev = rev || JSON.parse(raw.toString('utf8'))._rev; } catch (e) { /* the stand-in answers */ }
    if (rev && await isDeleted(req.params.db, req.params.id)) {
      res.status(409).json({ error: 'conflict', reason: 'Document update conflict.' });
      return;
    }
    const r = await selfRequest('PUT', req.url, raw);
    res.status(r.status).json(r.json);
  }).catch(next);
});

app.get('/_session', (req, res) => {
  res.json({
    ok: true,
    userCtx: { name: user, roles: ['_admin'] },
    info: { authentication_handlers: ['default'], authenticated: 'default' },
  });
});

// A request to this server itself, past the fixes below (marked internal). `body` is a
// value to send as JSON, or a Buffer sent as it is.
function selfRequest(method, path, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined
      : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1', port, path, method,
        headers: Object.assign(
          { accept: 'application/json', 'x-standin-internal': '1' },
          payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}),
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => { text += chunk; });
        res.on('end', () => {
          try { resolve({ status: res.statusCode, json: JSON.parse(text) }); } catch (e) { reject(e); }
        });
      });
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

function allDbs() {
  return selfRequest('GET', '/_all_dbs').then((r) => r.json);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => { chunks.push(chunk); });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const SLASH = /%2F/gi;
const fromStored = (name) => name.split('(2f)').join('/');

// Whether a document is deleted (its tombstone is the winning revision).
async function isDeleted(db, id) {
  const r = await selfRequest('POST', '/' + encodeURIComponent(db) + '/_all_docs', { keys: [id] });
  const row = r.json.rows && r.json.rows[0];
  return Boolean(row && row.value && row.value.deleted);
}

app.get('/:db/_all_docs', (req, res, next) => {
  const q = req.query;
  if (q.endkey === undefined && q.end_key === undefined && q.key === undefined && q.keys === undefined
      && q.descending !== 'true') {
    // The highest code point, as a JSON string: U+10FFFF.
    req.url += (req.url.includes('?') ? '&' : '?') + 'endkey=%22%F4%8F%BF%BF%22';
    req.query.endkey = '"\u{10FFFF}"';
  }
  next();
});

app.post('/:db/_all_docs', (req, res, next) => {
  if (req.internal || req.query.include_docs !== 'true') return next();
  readBody(req).then(async (text) => {
    const keys = (JSON.parse(text.toString('utf8') || '{}') || {}).keys;
    const base = '/' + encodeURIComponent(req.params.db) + '/_all_docs';
    if (!Array.isArray(keys)) {
      res.status(400).json({ error: 'bad_request', reason: '`keys` body member must be an array.' });
      return;
    }
    const plain = await selfRequest('POST', base, { keys });
    if (plain.status !== 200) {
      res.status(plain.status).json(plain.json);
      return;
    }
    const live = plain.json.rows.filter((r) => r.value && !r.value.deleted).map((r) => r.key);
    const full = {};
    if (live.length) {
      const withDocs = await selfRequest('POST', base + '?include_docs=true', { keys: live });
      for (const row of withDocs.json.rows) full[row.key] = row;
    }
    const rows = plain.json.rows.map((r) => {
      if (r.value && !r.value.deleted) return full[r.key] || r;
      if (r.value) return Object.assign({}, r, { doc: null });
      return r;
    });
    res.json({ total_rows: plain.json.total_rows, offset: plain.json.offset, rows });
  }).catch(next);
});

app.post('/:db/_find', (req, res, next) => {
  if (req.internal) return next();
  readBody(req).then(async (raw) => {
    let query;
    try { query = JSON.parse(raw.toString('utf8')); } catch (e) { query = null; }
    if (!query || typeof query !== 'object') {
      res.status(400).json({ error: 'bad_request', reason: 'Request body must be a JSON object' });
      return;
    }
    const limit = query.limit === undefined ? 25 : query.limit;
    let skip = query.skip || 0;
    if (query.bookmark) skip = JSON.parse(Buffer.from(query.bookmark, 'base64').toString('utf8')).offset;
    const forwarded = Object.assign({}, query);
    for (const key of ['limit', 'skip', 'bookmark', 'fields']) delete forwarded[key];
    const r = await selfRequest('POST', '/' + encodeURIComponent(req.params.db) + '/_find', forwarded);
    if (r.status !== 200) {
      if (r.status === 400 && /^Cannot sort on field/.test(r.json.reason || '')) {
        res.status(400).json({
          error: 'no_usable_index',
          reason: 'No index exists for this sort, try indexing by the sort fields.',
        });
      } else {
        res.status(r.status).json(r.json);
      }
      return;
    }
    const sortFields = (query.sort || []).map((s) => (typeof s === 'string' ? s : Object.keys(s)[0]));
    const docs = r.json.docs
      .filter((d) => !d._id.startsWith('_design/'))
      .filter((d) => sortFields.every((f) => fieldAt(d, f) !== undefined));
    const page = docs.slice(skip, skip + limit);
    const fields = Array.isArray(query.fields) && query.fields.length ? query.fields : null;
    res.json({
      docs: fields ? page.map((d) => project(d, fields)) : page,
      bookmark: Buffer.from(JSON.stringify({ offset: skip + page.length })).toString('base64'),
    });
  }).catch(next);
});

// A dotted path's value (numeric segments index arrays), or undefined.
function fieldAt(doc, field) {
  return field.split('.').reduce((v, key) => (v !== null && typeof v === 'object' ? v[key] : undefined), doc);
}

// CouchDB's `fields`: each existing path copied, in order, into nested objects.
function project(doc, fields) {
  const out = {};
  for (const field of fields) {
    const value = fieldAt(doc, field);
    if (value === undefined) continue;
    const parts = field.split('.');
    let target = out;
    for (const part of parts.slice(0, -1)) {
      if (target[part] === null || typeof target[part] !== 'object') target[part] = {};
      target = target[part];
    }
    target[parts[parts.length - 1]] = value;
  }
  return out;
}

app.delete('/:db', (req, res, next) => {
  if (req.internal || req.params.db.startsWith('_')) return next();
  allDbs().then((dbs) => {
    if (dbs.includes(req.params.db)) return next();
    res.status(404).json({ error: 'not_found', reason: 'Database does not exist.' });
  }, next);
});

app.use(pouchApp);

const server = app.listen(port, '127.0.0.1', () => {
  process.stdout.write('LISTENING ' + port + '\n');
});
server.keepAliveTimeout = 60000;
server.headersTimeout = 61000;
server.on('error', (e) => {
  process.stderr.write('stand-in could not listen on ' + port + ': ' + e.message + '\n');
  process.exit(1);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
