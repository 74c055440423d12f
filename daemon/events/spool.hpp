#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "util/fd.hpp"

namespace cim::events {

// One event as the spool keeps it, byte for byte what is (re-)sent.
struct Record {
    std::uint64_t seq = 0;  // per node, +1 each event, never reused, continues across restarts
    std::string event_id;  // UUIDv7, the JetStream Nats-Msg-Id
    std::string subject;
    std::string payload;  // the event JSON exactly as sent, so re-sends are byte-identical
    std::chrono::system_clock::time_point time;  // the event's `time`

    bool operator==(const Record&) const = default;
};

// The oldest events evicted to make room: what an `events_dropped` event reports.
struct Dropped {
    std::uint64_t count = 0;
    std::uint64_t first_seq = 0;
    std::uint64_t last_seq = 0;
    std::chrono::system_clock::time_point first_time;
    std::chrono::system_clock::time_point last_time;

    bool empty() const { return count == 0; }
    void add(const Record& record);
    void add(const Dropped& later);  // `later` was dropped after these
};

// What open() found in the file an earlier run left.
struct Recovery {
    std::size_t records = 0;  // events kept: read back, not acknowledged, within max_bytes
    std::int64_t offset = 0;  // where the damage starts
    std::int64_t discarded_bytes = 0;  // from `offset` to the end, cut off
    std::string reason;  // why the rest was unreadable; empty when the file was whole
    Dropped dropped;  // evicted because a smaller max_bytes could not hold all that was read

    bool damaged() const { return !reason.empty(); }
    // "kept 12 events; cut 37 bytes at offset 1234: checksum mismatch"
    std::string str() const;
};

// Durable, ordered storage of the events not yet acknowledged by the
// stream: <directory>/events.spool, an append-only log of checksummed frames
// (see spool_format.hpp), rewritten whole when acknowledged records dominate.
// Memory and disk are bounded by max_bytes (the frames of the pending
// events; the file holds at most about twice that, plus 64 KiB). Loop thread
// only. Writes go to the file at once; what makes them durable, an
// fdatasync, is asked for with unsynced() and done by anyone (a Syncer
// thread, or sync()), so that events written meanwhile share it. A call that
// compacts writes bytes() anew and syncs twice, on the caller's thread,
// rarely enough to cost less per event.
class Spool {
public:
    // What one fdatasync of `file` makes durable: every frame written to it
    // so far, the events up to `seq` among them.
    struct Unsynced {
        std::shared_ptr<const util::Fd> file;
        std::uint64_t seq = 0;
    };

    // Opens or creates the spool (mode 0600) and reads what an earlier run
    // left; see recovery(). Damaged content is never an error; a directory
    // that cannot hold the spool is, in words with the path. A write failure
    // while rewriting the file (ENOSPC, EIO) leaves a Spool with
    // durable() == false. Holds an exclusive lock on the directory: another
    // open of it fails until this Spool is gone.
    static std::variant<Spool, std::string> open(const std::filesystem::path& directory, std::int64_t max_bytes);

    // A spool that keeps its records in memory only, where open() failed:
    // bounded, ordered and numbered the same, never durable (error() is `why`).
    static Spool in_memory(std::int64_t max_bytes, std::string why);

    // Writes `record`, whose seq must be at least next_seq() (or it throws
    // std::invalid_argument: a bug in the caller), to the file; it may be
    // sent once a sync has covered it (may_send). The oldest pending records
    // are evicted as far as needed to stay within max_bytes; a record that
    // alone is larger than max_bytes is not kept and is the one dropped (the
    // result's last_seq is its seq). When the write fails the record stays
    // pending in memory and durable() turns false.
    Dropped append(Record record);

    // What a sync would make durable now; none when every event written is
    // (or none can be: not durable()).
    std::optional<Unsynced> unsynced() const;
    // The result of fdatasync(what.file): 0, or the errno, which makes the
    // spool not durable until the file is rewritten. A result for a file a
    // rewrite has replaced is stale (the rewrite synced everything) and ignored.
    void synced(const Unsynced& what, int error);
    // unsynced(), fdatasync'd on this thread.
    void sync();
    // The event is on disk, or cannot be (not durable()): it may be sent.
    bool may_send(std::uint64_t seq) const { return !durable() || seq <= synced_seq_; }

    // The stream has the event: it leaves the spool. Acknowledgements may come
    // in any order; an unknown or repeated seq is ignored.
    void acknowledge(std::uint64_t seq);

    // A new bound (a reload); evicts the oldest if the pending ones no longer fit.
    Dropped set_max_bytes(std::int64_t max_bytes);

    const std::deque<Record>& pending() const { return pending_; }  // oldest first
    std::uint64_t next_seq() const { return next_seq_; }
    std::int64_t bytes() const { return bytes_; }  // the frames of the pending records
    std::int64_t max_bytes() const { return max_bytes_; }
    std::int64_t file_bytes() const { return file_bytes_; }
    const std::filesystem::path& path() const { return path_; }
    const Recovery& recovery() const { return recovery_; }

    // Whether the file is known to hold every pending record: false after
    // any failed write (a compaction's too) until the whole file has been
    // rewritten, which the next append or acknowledgement tries.
    bool durable() const { return error_.empty(); }
    const std::string& error() const { return error_; }  // why not durable

private:
    Spool(util::Fd directory, std::filesystem::path path, std::int64_t max_bytes);
    // Evicts the oldest until bytes() <= limit, adding a removal frame for each.
    Dropped evict_down_to(std::int64_t limit, std::string& removals);
    // Appends `frames`, or rewrites the file after a failure; compacts.
    void persist(const std::string& frames);
    // Writes the pending records to a new file, synced, and renames it into
    // place; 0 or the errno.
    int rewrite();
    bool worth_compacting() const;  // removed frames are over half the file, and 64 KiB
    // Sets error() from errno; returns it.
    int failed(const std::filesystem::path& path, const std::string& what);

    util::Fd directory_;  // locked, and fsync'd after a rename
    std::shared_ptr<const util::Fd> file_;  // none until the first rewrite; shared with a sync under way
    std::filesystem::path path_;
    std::int64_t max_bytes_;
    std::deque<Record> pending_;
    std::uint64_t next_seq_ = 1;
    std::uint64_t synced_seq_ = 0;  // every event up to it is on disk
    std::int64_t bytes_ = 0;
    std::int64_t file_bytes_ = 0;  // where the next frame goes
    Recovery recovery_;
    std::string error_;
};

}  // namespace cim::events
