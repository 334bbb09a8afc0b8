#include "daemon/isolation/wire.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace pipelined::isolation {

namespace {

constexpr std::size_t kHeaderSize = 4 + 1 + 8;
constexpr std::size_t kInlineLimit = 4096;               // larger byte fields are referenced, not copied
constexpr std::size_t kMaxFrame = std::size_t{1} << 31;  // a frame that claims more is a broken peer

void put_le(char* out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t get_le(const char* in, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  return v;
}

bool read_all(int fd, char* out, std::size_t size) {
  while (size > 0) {
    const ssize_t n = ::read(fd, out, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

FrameWriter::FrameWriter(FrameType type, std::uint64_t id) {
  char header[kHeaderSize];
  put_le(header, 0, 4);  // body size, filled in by send()
  header[4] = static_cast<char>(type);
  put_le(header + 5, id, 8);
  owned_.append(header, kHeaderSize);
  segments_.push_back({nullptr, 0, kHeaderSize});
}

void FrameWriter::append_owned(const void* data, std::size_t size) {
  if (size == 0) return;
  Segment& last = segments_.back();
  if (last.external == nullptr && last.offset + last.size == owned_.size()) {
    last.size += size;
  } else {
    segments_.push_back({nullptr, owned_.size(), size});
  }
  owned_.append(static_cast<const char*>(data), size);
  body_size_ += size;
}

FrameWriter& FrameWriter::u32(std::uint32_t v) {
  char b[4];
  put_le(b, v, 4);
  append_owned(b, 4);
  return *this;
}

FrameWriter& FrameWriter::u64(std::uint64_t v) {
  char b[8];
  put_le(b, v, 8);
  append_owned(b, 8);
  return *this;
}

FrameWriter& FrameWriter::str(std::string_view s) {
  u32(static_cast<std::uint32_t>(s.size()));
  append_owned(s.data(), s.size());
  return *this;
}

FrameWriter& FrameWriter::bytes_ref(const void* data, std::size_t size) {
  u64(size);
  if (size < kInlineLimit) {
    append_owned(data, size);
  } else {
    segments_.push_back({static_cast<const char*>(data), 0, size});
    body_size_ += size;
  }
  return *this;
}

FrameWriter& FrameWriter::payload(const pl_payload& p) {
  bytes_ref(p.json, p.json != nullptr ? p.json_size : 0);
  u32(static_cast<std::uint32_t>(p.attachment_count));
  for (std::size_t i = 0; i < p.attachment_count; ++i) {
    const pl_attachment& a = p.attachments[i];
    str(a.name ? a.name : "");
    str(a.content_type ? a.content_type : "");
    bytes_ref(a.data, a.data != nullptr ? a.size : 0);
  }
  return *this;
}

bool FrameWriter::send(int fd, std::mutex& mu) {
  put_le(owned_.data(), body_size_, 4);
  std::vector<iovec> iov;
  iov.reserve(segments_.size());
  for (const Segment& s : segments_) iov.push_back({const_cast<char*>(s.external ? s.external : owned_.data() + s.offset), s.size});
  std::lock_guard lock(mu);
  std::size_t first = 0;
  while (first < iov.size()) {
    msghdr msg{};
    msg.msg_iov = iov.data() + first;
    msg.msg_iovlen = std::min<std::size_t>(iov.size() - first, IOV_MAX);
    // MSG_NOSIGNAL: a peer that died is an error to handle here, not a SIGPIPE for the process.
    const ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    auto left = static_cast<std::size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (first < iov.size()) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

std::optional<Frame> read_frame(int fd) {
  char header[kHeaderSize];
  if (!read_all(fd, header, kHeaderSize)) return std::nullopt;
  const std::size_t size = get_le(header, 4);
  if (size > kMaxFrame) return std::nullopt;
  Frame f;
  f.type = static_cast<FrameType>(static_cast<unsigned char>(header[4]));
  f.id = get_le(header + 5, 8);
  f.body.resize(size);
  if (!read_all(fd, f.body.data(), size)) return std::nullopt;
  return f;
}

bool FrameReader::take(std::size_t n) {
  if (failed_ || data_.size() - pos_ < n) {
    failed_ = true;
    return false;
  }
  return true;
}

std::uint32_t FrameReader::u32() {
  if (!take(4)) return 0;
  const auto v = static_cast<std::uint32_t>(get_le(data_.data() + pos_, 4));
  pos_ += 4;
  return v;
}

std::uint64_t FrameReader::u64() {
  if (!take(8)) return 0;
  const std::uint64_t v = get_le(data_.data() + pos_, 8);
  pos_ += 8;
  return v;
}

std::string FrameReader::str() {
  const std::uint32_t n = u32();
  if (!take(n)) return {};
  std::string s(data_.substr(pos_, n));
  pos_ += n;
  return s;
}

std::string_view FrameReader::bytes() {
  const std::uint64_t n = u64();
  if (!take(n)) return {};
  const std::string_view v = data_.substr(pos_, n);
  pos_ += n;
  return v;
}

void FrameReader::payload(WirePayload& out) {
  const std::string_view json = bytes();
  const std::uint32_t count = u32();
  if (failed_ || count > data_.size()) {  // each attachment takes at least 16 bytes: a larger count is garbage
    failed_ = true;
    return;
  }
  out.names.clear();
  out.names.reserve(2 * count);  // c_str() pointers below must not move
  out.attachments.clear();
  for (std::uint32_t i = 0; i < count && !failed_; ++i) {
    out.names.push_back(str());
    out.names.push_back(str());
    const std::string_view data = bytes();
    out.attachments.push_back(
        {out.names[2 * i].c_str(), out.names[2 * i + 1].c_str(), reinterpret_cast<const std::uint8_t*>(data.data()), data.size()});
  }
  out.view = {json.data(), json.size(), out.attachments.data(), out.attachments.size()};
}

}  // namespace pipelined::isolation
