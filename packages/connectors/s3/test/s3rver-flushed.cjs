/**
 * Starts s3rver's own CLI after one fix to its filesystem store: s3rver 3.7.1 answers a PutObject
 * before the object's file is flushed (it resolves when the body has been read, not when the
 * file is written), so a HeadObject right after the PUT can report the old or a zero size. Real
 * S3 has read-after-write consistency; this waits for the write to finish, so tests see that too.
 */
'use strict';
const { createHash } = require('node:crypto');
const { createWriteStream } = require('node:fs');
const { mkdir } = require('node:fs/promises');
const { dirname } = require('node:path');
const { Readable, Transform } = require('node:stream');
const { pipeline } = require('node:stream/promises');
const FilesystemStore = require('s3rver/lib/stores/filesystem.js');

FilesystemStore.prototype.putObject = async function putObjectFlushed(object) {
  const objectPath = this.getResourcePath(object.bucket, object.key, 'object');
  await mkdir(dirname(objectPath), { recursive: true });
  const md5 = createHash('md5');
  let size = 0;
  const source = Buffer.isBuffer(object.content) ? Readable.from([object.content]) : object.content;
  const measure = new Transform({
    transform(chunk, _encoding, callback) {
      md5.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(source, measure, createWriteStream(objectPath));
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  return { size, md5: digest };
};

require('s3rver/bin/s3rver.js');
