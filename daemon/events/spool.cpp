#include "events/spool.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "events/spool_format.hpp"
#include "util/text.hpp"

namespace cim::events {

namespace {

constexpr const char* file_name = "events.spool";
constexpr const char* temporary_name = "events.spool.tmp";
// A rewrite pays for itself once removed frames are more than half the file
// and at least this much, so the file stays within about twice bytes().
constexpr std::int64_t compaction_minimum = 64 * 1024;
constexpr std::size_t rewrite_chunk = 64 * 1024;

// Running out of space or a failing disk may pass; anything else means the
// directory cannot hold the spool at all.
bool may_pass(int error)
{
    return error == ENOSPC || error == EDQUOT || error == EIO || error == EFBIG;
}

bool write_all_at(int fd, std::string_view bytes, std::int64_t offset)
{
    while (!bytes.empty()) {
        const ssize_t n = pwrite(fd, bytes.data(), bytes.size(), offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO;  // no progress and no reason given
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
        offset += n;
    }
    return true;
}

bool read_all_at(int fd, std::string& out, std::size_t size, std::int64_t offset)
{
    out.resize(size);
    for (std::size_t done = 0; done < size;) {
        const ssize_t n = pread(fd, out.data() + done, size - done, offset + static_cast<std::int64_t>(done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENODATA;  // shorter than fstat said
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    return true;
}

std::deque<Record>::iterator find(std::deque<Record>& records, std::uint64_t seq)
{
    const auto it = std::lower_bound(
        records.begin(), records.end(), seq, [](const Record& record, std::uint64_t s) { return record.seq < s; });
    return it != records.end() && it->seq == seq ? it : records.end();
}

// What a spool file says: the pending events and the next seq, read up to
// the first frame that is not whole and intact, or a refusal to touch it.
struct Replay {
    std::deque<Record> pending;
    std::uint64_t next_seq = 1;  // the header's (a rewrite keeps it above the events it keeps) or later
    std::uint64_t last_event_seq = 0;  // events come in seq order
    std::int64_t end = 0;  // of the last good frame
    std::string damage;  // why reading stopped before the end of the file
    std::string refusal;  // a file this version must not rewrite
};

// Applies one intact frame; the damage if it makes no sense where it is.
std::string apply(Replay& replay, const format::Head& head, std::string_view body)
{
    const bool first = replay.end == 0;
    if (first != (head.kind == static_cast<std::uint32_t>(format::Kind::header)))
        return first ? "no header" : "a second header";
    switch (static_cast<format::Kind>(head.kind)) {
    case format::Kind::header: {
        const auto header = format::decode_header(body);
        if (!header || header->next_seq == 0)
            return "a malformed header";
        if (header->version != format::version) {
            replay.refusal = "is format " + std::to_string(header->version) + ", this cim-leaf reads format " +
                std::to_string(format::version) + " (left as it is)";
            return {};
        }
        replay.next_seq = header->next_seq;
        return {};
    }
    case format::Kind::event: {
        auto record = format::decode_event(body);
        if (!record || record->seq == 0 || record->seq == UINT64_MAX)
            return "a malformed event";
        if (record->seq <= replay.last_event_seq)
            return "event seq " + std::to_string(record->seq) + " after " + std::to_string(replay.last_event_seq);
        replay.last_event_seq = record->seq;
        replay.next_seq = std::max(replay.next_seq, record->seq + 1);
        replay.pending.push_back(std::move(*record));
        return {};
    }
    case format::Kind::removal: {
        const auto seq = format::decode_removal(body);
        if (!seq)
            return "a malformed removal";
        if (const auto it = find(replay.pending, *seq); it != replay.pending.end())
            replay.pending.erase(it);
        return {};
    }
    }
    return "unknown frame kind " + std::to_string(head.kind);
}

// The file front to back through a window of at least 64 KiB: a spool of
// small frames is read with a few system calls instead of two a frame.
class Window {
public:
    Window(int fd, std::int64_t size) : fd_(fd), size_(size) { }

    // The `length` bytes at `offset` (within the file), valid until the next read.
    bool read(std::int64_t offset, std::size_t length, std::string_view& out)
    {
        const auto wanted = static_cast<std::int64_t>(length);
        if (offset < start_ || offset + wanted > start_ + static_cast<std::int64_t>(bytes_.size())) {
            const std::int64_t fill = std::min(std::max(wanted, chunk), size_ - offset);
            if (!read_all_at(fd_, bytes_, static_cast<std::size_t>(fill), offset))
                return false;
            start_ = offset;
        }
        out = std::string_view(bytes_).substr(static_cast<std::size_t>(offset - start_), length);
        return true;
    }

private:
    static constexpr std::int64_t chunk = 64 * 1024;
    int fd_;
    std::int64_t size_;
    std::int64_t start_ = 0;
    std::string bytes_;  // the file from start_
};

Replay replay_file(int fd, std::int64_t size)
{
    Replay replay;
    Window window(fd, size);
    std::string_view head_bytes;
    std::string_view body;
    while (replay.end < size && replay.damage.empty() && replay.refusal.empty()) {
        const std::int64_t left = size - replay.end;
        if (left < static_cast<std::int64_t>(format::head_bytes)) {
            replay.damage = "a frame head cut short";
            break;
        }
        if (!window.read(replay.end, format::head_bytes, head_bytes)) {
            replay.damage = std::string("cannot read: ") + std::strerror(errno);
            break;
        }
        const auto head = format::parse_head(head_bytes);
        if (!head) {
            replay.damage = "no frame marker";
            break;
        }
        const std::int64_t frame_bytes = static_cast<std::int64_t>(format::head_bytes) + head->length;
        if (head->length > format::max_body || frame_bytes > left) {
            replay.damage = "a frame of " + std::to_string(frame_bytes) + " bytes cut short";
            break;
        }
        if (!window.read(replay.end + static_cast<std::int64_t>(format::head_bytes), head->length, body)) {
            replay.damage = std::string("cannot read: ") + std::strerror(errno);
            break;
        }
        if (!format::checksum_matches(*head, body)) {
            replay.damage = "checksum mismatch";
            break;
        }
        replay.damage = apply(replay, *head, body);
        if (replay.damage.empty())
            replay.end += frame_bytes;
    }
    if (replay.end == 0 && !replay.damage.empty())
        replay.damage += " (seq numbering starts again at 1)";
    return replay;
}

}  // namespace

void Dropped::add(const Record& record)
{
    Dropped one;
    one.count = 1;
    one.first_seq = one.last_seq = record.seq;
    one.first_time = one.last_time = record.time;
    add(one);
}

void Dropped::add(const Dropped& later)
{
    if (later.empty())
        return;
    if (empty()) {
        *this = later;
        return;
    }
    count += later.count;
    last_seq = later.last_seq;
    last_time = later.last_time;
}

std::string Recovery::str() const
{
    std::string text = "kept " + util::count_words(records, "event");
    if (damaged())
        text +=
            "; cut " + std::to_string(discarded_bytes) + " bytes at offset " + std::to_string(offset) + ": " + reason;
    if (!dropped.empty())
        text += "; dropped the oldest " + std::to_string(dropped.count) + " (seq " + std::to_string(dropped.first_seq) +
            " to " + std::to_string(dropped.last_seq) + ") to fit max_bytes";
    return text;
}

Spool::Spool(util::Fd directory, std::filesystem::path path, std::int64_t max_bytes)
    : directory_(std::move(directory)), path_(std::move(path)), max_bytes_(max_bytes)
{
}

std::variant<Spool, std::string> Spool::open(const std::filesystem::path& directory, std::int64_t max_bytes)
{
    // The directory itself may be a symlink (StateDirectory= makes one with
    // DynamicUser=); the file in it may not.
    util::Fd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!directory_fd)
        return directory.string() + ": cannot open the spool directory: " + std::strerror(errno);
    // Two processes appending to one log would interleave their frames.
    if (flock(directory_fd.get(), LOCK_EX | LOCK_NB) != 0)
        return directory.string() +
            (errno == EWOULDBLOCK ? ": another process holds the spool lock"
                                  : ": cannot lock: " + std::string(std::strerror(errno)));

    Spool spool(std::move(directory_fd), directory / file_name, max_bytes);
    const std::string where = spool.path_.string() + ": ";
    // O_NONBLOCK: a FIFO in its place is refused after fstat, not waited on.
    util::Fd file(openat(spool.directory_.get(), file_name, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!file && errno != ENOENT)
        return where + (errno == ELOOP ? "is a symbolic link" : std::string("cannot open: ") + std::strerror(errno));
    if (file) {
        struct stat st { };
        if (fstat(file.get(), &st) != 0)
            return where + "cannot stat: " + std::strerror(errno);
        if (!S_ISREG(st.st_mode))
            return where + "is not a regular file";
        Replay replay = replay_file(file.get(), st.st_size);
        if (!replay.refusal.empty())
            return where + replay.refusal;
        spool.pending_ = std::move(replay.pending);
        spool.next_seq_ = replay.next_seq;
        for (const auto& record : spool.pending_)
            spool.bytes_ += format::event_frame_bytes(record);
        spool.recovery_.offset = replay.end;
        spool.recovery_.discarded_bytes = st.st_size - replay.end;
        spool.recovery_.reason = std::move(replay.damage);
        spool.file_ = std::make_shared<const util::Fd>(std::move(file));
        spool.file_bytes_ = st.st_size;
    }
    // What an earlier run wrote is taken as on disk: if its last fdatasync
    // did not come, the kernel writes it back as for any file.
    spool.synced_seq_ = spool.next_seq_ - 1;
    std::string removals;  // not needed: the rewrite below keeps only what is left
    spool.recovery_.dropped = spool.evict_down_to(max_bytes, removals);
    spool.recovery_.records = spool.pending_.size();

    // A new file, a damaged tail or dropped records are rewritten at once
    // (which also proves that the directory takes new files); a clean spool
    // is appended to as it is, so a start waits for no disk, and compacted
    // when that pays, as at any time.
    const bool clean = spool.file_ && spool.recovery_.discarded_bytes == 0 && spool.recovery_.dropped.empty();
    if (clean && !spool.worth_compacting())
        return spool;
    if (const int error = spool.rewrite(); error != 0 && !may_pass(error))
        return spool.error_;
    return spool;
}

Spool Spool::in_memory(std::int64_t max_bytes, std::string why)
{
    Spool spool(util::Fd(), {}, max_bytes);
    spool.error_ = std::move(why);
    return spool;
}

Dropped Spool::append(Record record)
{
    if (record.seq < next_seq_ || record.seq == UINT64_MAX)
        throw std::invalid_argument(
            "spool: seq " + std::to_string(record.seq) + " is not a next seq (" + std::to_string(next_seq_) + ")");
    next_seq_ = record.seq + 1;
    const std::int64_t size = format::event_frame_bytes(record);
    if (size > max_bytes_ || size - static_cast<std::int64_t>(format::head_bytes) > format::max_body) {
        Dropped itself;
        itself.add(record);
        return itself;
    }
    std::string frames;
    Dropped dropped = evict_down_to(max_bytes_ - size, frames);
    format::add_event(frames, record);
    bytes_ += size;
    pending_.push_back(std::move(record));
    persist(frames);
    return dropped;
}

std::optional<Spool::Unsynced> Spool::unsynced() const
{
    if (!durable() || synced_seq_ + 1 >= next_seq_)
        return std::nullopt;
    return Unsynced{file_, next_seq_ - 1};
}

void Spool::synced(const Unsynced& what, int error)
{
    if (what.file != file_)
        return;
    if (error == 0) {
        synced_seq_ = std::max(synced_seq_, what.seq);
    } else if (durable()) {
        // The kernel may have dropped the pages it could not write: a later
        // fdatasync that succeeds proves nothing about them.
        errno = error;
        failed(path_, "cannot fsync");
    }
}

void Spool::sync()
{
    if (const auto what = unsynced())
        synced(*what, fdatasync(what->file->get()) == 0 ? 0 : errno);
}

void Spool::acknowledge(std::uint64_t seq)
{
    const auto it = find(pending_, seq);
    if (it == pending_.end())
        return;
    bytes_ -= format::event_frame_bytes(*it);
    pending_.erase(it);
    std::string frame;
    format::add_removal(frame, seq);
    // Never waited for: a removal lost to a crash only means the event is
    // sent again at the next start, and the stream drops the duplicate by its
    // Nats-Msg-Id (within its duplicate window; consumers can tell by event_id).
    persist(frame);
}

Dropped Spool::set_max_bytes(std::int64_t max_bytes)
{
    max_bytes_ = max_bytes;
    std::string removals;
    Dropped dropped = evict_down_to(max_bytes, removals);
    if (!removals.empty())
        persist(removals);  // one lost is evicted again, and reported again, at the next start
    return dropped;
}

Dropped Spool::evict_down_to(std::int64_t limit, std::string& removals)
{
    Dropped dropped;
    while (bytes_ > limit && !pending_.empty()) {
        const Record& oldest = pending_.front();
        dropped.add(oldest);
        format::add_removal(removals, oldest.seq);
        bytes_ -= format::event_frame_bytes(oldest);
        pending_.pop_front();
    }
    return dropped;
}

void Spool::persist(const std::string& frames)
{
    if (!directory_)
        return;  // in memory only
    // After a failed write the file lacks something, or holds a torn frame,
    // or (after a failed fsync) pages the kernel may have given up on: only
    // a whole new file can be trusted again.
    if (!durable()) {
        rewrite();
        return;
    }
    if (!write_all_at(file_->get(), frames, file_bytes_)) {
        failed(path_, "cannot write");
        return;
    }
    file_bytes_ += static_cast<std::int64_t>(frames.size());
    if (worth_compacting())
        rewrite();
}

bool Spool::worth_compacting() const
{
    return file_bytes_ - bytes_ >= compaction_minimum && file_bytes_ - bytes_ > bytes_;
}

int Spool::rewrite()
{
    const int directory = directory_.get();
    const std::filesystem::path temporary = path_.parent_path() / temporary_name;
    if (unlinkat(directory, temporary_name, 0) != 0 && errno != ENOENT)
        return failed(temporary, "cannot remove what an earlier run left");
    // O_EXCL: never follows a symlink, never opens a FIFO.
    util::Fd file(openat(directory, temporary_name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!file)
        return failed(temporary, "cannot create");

    std::string chunk;
    std::int64_t size = 0;
    const auto flush = [&] {
        if (!write_all_at(file.get(), chunk, size))
            return false;
        size += static_cast<std::int64_t>(chunk.size());
        chunk.clear();
        return true;
    };
    format::add_header(chunk, next_seq_);
    bool written = true;
    for (auto it = pending_.begin(); written && it != pending_.end(); ++it) {
        format::add_event(chunk, *it);
        if (chunk.size() >= rewrite_chunk)
            written = flush();
    }
    const char* failure = nullptr;
    if (!written || !flush())
        failure = "cannot write";
    else if (fdatasync(file.get()) != 0)
        failure = "cannot fsync";
    else if (renameat(directory, temporary_name, directory, file_name) != 0)
        failure = "cannot rename into place";
    if (failure) {
        const int error = failed(temporary, failure);
        unlinkat(directory, temporary_name, 0);
        return error;
    }
    file_ = std::make_shared<const util::Fd>(std::move(file));
    file_bytes_ = size;
    synced_seq_ = next_seq_ - 1;
    // The rename itself is durable only once the directory is.
    if (fsync(directory) != 0)
        return failed(path_.parent_path(), "cannot fsync");
    error_.clear();
    return 0;
}

int Spool::failed(const std::filesystem::path& path, const std::string& what)
{
    const int error = errno;
    error_ = path.string() + ": " + what + ": " + std::strerror(error);
    return error;
}

}  // namespace cim::events
