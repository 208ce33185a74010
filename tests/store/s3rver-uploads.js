// Preloaded into s3rver 3.7 by run-s3rver.sh (node --require): adds the three
// multipart operations s3rver lacks, over s3rver's own on-disk upload store
// (BUCKET/._S3rver_uploads/ID/{key,metadata,N}), answering as S3 does:
//   GET    /bucket?uploads[&prefix=P]      ListMultipartUploads (one page)
//   DELETE /bucket/key?uploadId=ID         AbortMultipartUpload (204, or 404 NoSuchUpload)
//   PUT part / POST complete of an upload ID that does not exist: 404
//                                          NoSuchUpload (s3rver would create it)
// Without them an interrupted upload could be neither listed nor aborted
// through the API, and the store's guarantees about them not tested.
'use strict';

const fs = require('fs');
const path = require('path');

const S3rver = require(path.join(__dirname, 'node_modules', 's3rver', 'lib', 's3rver.js'));

const xmlEscape = (s) =>
  String(s).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);

function noSuchUpload(ctx, id) {
  ctx.status = 404;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>' +
    '<Message>The specified upload does not exist.</Message>' +
    `<UploadId>${xmlEscape(id)}</UploadId></Error>`;
}

function uploadsMiddleware(store) {
  return async (ctx, next) => {
    const url = new URL(ctx.url, 'http://localhost');
    const m = url.pathname.match(/^\/([^/]+)(?:\/(.+))?$/);
    if (!m) return next();
    const bucket = decodeURIComponent(m[1]);
    const q = url.searchParams;
    const dir = store.getResourcePath(bucket, undefined, 'uploads');
    if (ctx.method === 'GET' && !m[2] && q.has('uploads')) {
      if (!fs.existsSync(path.join(store.rootDirectory, bucket))) return next();
      const prefix = q.get('prefix') || '';
      const ups = [];
      for (const id of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
        let key;
        try {
          key = fs.readFileSync(path.join(dir, id, 'key'), 'utf8');
        } catch (e) {
          continue;
        }
        if (!key.startsWith(prefix)) continue;
        ups.push({ key, id, initiated: fs.statSync(path.join(dir, id)).mtime.toISOString() });
      }
      ups.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.id < b.id ? -1 : 1));
      ctx.type = 'application/xml';
      ctx.body =
        '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult>' +
        `<Bucket>${xmlEscape(bucket)}</Bucket><Prefix>${xmlEscape(prefix)}</Prefix>` +
        '<IsTruncated>false</IsTruncated>' +
        ups
          .map(
            (u) =>
              `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${xmlEscape(u.id)}</UploadId>` +
              `<Initiated>${u.initiated}</Initiated></Upload>`,
          )
          .join('') +
        '</ListMultipartUploadsResult>';
      return undefined;
    }
    if (m[2] && q.has('uploadId')) {
      const id = q.get('uploadId');
      const up = /^[0-9A-Za-z_-]+$/.test(id) ? path.join(dir, id) : null;
      const exists = up !== null && fs.existsSync(path.join(up, 'key'));
      if (ctx.method === 'DELETE') {
        if (!exists) return noSuchUpload(ctx, id);
        fs.rmSync(up, { recursive: true, force: true });
        ctx.status = 204;
        return undefined;
      }
      if ((ctx.method === 'PUT' || ctx.method === 'POST') && !exists) return noSuchUpload(ctx, id);
    }
    return next();
  };
}

const run = S3rver.prototype.run;
S3rver.prototype.run = function runWithUploads(...args) {
  this.middleware.unshift(uploadsMiddleware(this.store));
  return run.apply(this, args);
};
