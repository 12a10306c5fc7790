/**
 * qcow2 images, versions 2 and 3 (QEMU docs/interop/qcow2.txt).
 *
 * Library search: npm has no maintained package that reads and writes
 * qcow2 with refcounts (the registry offers raw-file helpers such as
 * `file-disk` and a QEMU front-end or two, nothing that parses qcow2
 * metadata), so the format is implemented here, from the specification.
 *
 * What is supported: reading and writing v2/v3 images with any refcount
 * width; zero clusters (v3); compressed clusters (zlib, read; a write to
 * one allocates a normal cluster); backing files (unallocated clusters read
 * through, partial writes copy the rest of the cluster up); images with
 * internal snapshots (shared L2 tables and data clusters are copied on
 * write; snapshots themselves cannot be created or applied here).
 * Refused at open: encryption, external data files, extended L2 entries,
 * non-zlib compression, any unknown incompatible feature; opening for
 * writing an image marked dirty (lazy refcounts) or corrupt.
 *
 * Design:
 * - The L1 table stays in memory; L2 tables and refcount blocks sit in
 *   write-through LRU caches (table-cache.ts). Reads never take the
 *   metadata mutex.
 * - Concurrency: every request holds a shared RwLock; anything that changes
 *   metadata (allocation, COW, discard, zeroing) runs under one async
 *   mutex and re-reads the entries it acts on. Freed clusters are not
 *   reused at once: their refcounts are lowered later under the exclusive
 *   lock (at flush, close, or when many are pending), so no in-flight read
 *   or write can still be using a cluster when it is handed out again.
 * - Write ordering (each step is a completed pwrite before the next
 *   starts, so after kill -9 the kernel has them in this order):
 *     1. refcount increments for new clusters, then fdatasync: clusters are
 *        reserved in batches (`reserveBatch`), so this costs one fdatasync
 *        per batch, not per write;
 *     2. guest data (with the copied-up head/tail of partial clusters);
 *     3. the L2 entries (an existing table: just the changed entries); a
 *        new or copied L2 table is written whole, fdatasync, then
 *     4. the L1 entry.
 *   Freeing runs the other way: the L2/L1 entry is rewritten first, and
 *   the refcount is lowered only after a later fdatasync. A crash (or
 *   power loss) at any point therefore leaves at worst leaked clusters
 *   (`qemu-img check` reports leaks, never corruption; `-r leaks` fixes
 *   them). Data written since the guest's last flush may be lost on power
 *   loss, as with a disk's volatile cache.
 * - Corruption (tables outside the file or unaligned, metadata overlaps,
 *   bad entries) is a BlockError at open where the structure is global
 *   (header, L1, refcount table), and EIO for the request that meets it
 *   otherwise (one bad L2 entry fails the reads of its cluster only). A
 *   metadata write that fails half-way leaves the image read-only in
 *   memory rather than risk writing on inconsistent state.
 *
 * Modules: this one re-exports the image class. qcow2-image.ts holds
 * Qcow2Image (open, reads, writes, discard, write-zeroes, flush, close) on
 * top of qcow2-tables.ts (L1/L2 tables, cluster allocation, frees,
 * resize); qcow2-format.ts parses and builds the header and table entries,
 * qcow2-refcount.ts manages refcounts, qcow2-create.ts lays out new images.
 */
export { Qcow2Image, type Qcow2OpenOptions } from './qcow2-image.js';
