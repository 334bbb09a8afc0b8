// The framed protocol between the daemon and a plugin runner process (isolation: process), over one
// Unix stream socket. A frame is a little-endian header {u32 body size, u8 type, u64 id} and a body
// of fields written with FrameWriter and read back, in the same order, with FrameReader. `id` names
// the run a frame belongs to (or the HTTP call, for Http/HttpAnswer). Both ends are built from this
// tree, so the protocol is not versioned: a runner and its daemon are always the same build.
//
// Why not a serialization library: the messages are a handful of flat records whose large fields
// (images) should reach the socket without a copy; writev over the caller's own bytes does that,
// and the whole codec is the two small classes below.
#pragma once

#include <pipelined/plugin_abi.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pipelined::isolation {

enum class FrameType : std::uint8_t {
  // daemon -> runner
  Create = 1,      // plugin file, config JSON, whether HTTP is available; answered by Ready or Failed
  Run = 2,         // id = run; deadline (steady clock ns), input payload
  ItemIn = 3,      // id = run; one item of the stage's input stream
  ItemEnd = 4,     // id = run; the input stream ended (or there is none)
  Cancel = 5,      // id = run; the daemon stopped waiting: is_cancelled becomes true
  HttpAnswer = 6,  // id = http call; status, body, error class, error, attempts
  Shutdown = 7,    // finish the runs in flight, destroy the instance, exit
  // runner -> daemon
  Ready = 20,    // plugin name, version, stage, variant, bytes create() kept
  Failed = 21,   // the load or create() failed: reason
  Log = 22,      // id = run or 0; level, message
  ItemOut = 23,  // id = run; an emitted item
  Http = 24,     // id = http call; run id, provider, method, path, headers, body, timeout
  Done = 25,     // id = run; status, output payload or error class and message, peak heap bytes
};

// A frame being written. Small fields are copied into the frame; bytes passed to `bytes_ref` are
// referenced and must stay valid until send() returns.
class FrameWriter {
 public:
  FrameWriter(FrameType type, std::uint64_t id);
  FrameWriter& u32(std::uint32_t v);
  FrameWriter& u64(std::uint64_t v);
  FrameWriter& i64(std::int64_t v) { return u64(static_cast<std::uint64_t>(v)); }
  FrameWriter& str(std::string_view s);                        // u32 size + bytes, copied
  FrameWriter& bytes_ref(const void* data, std::size_t size);  // u64 size + bytes, referenced
  FrameWriter& payload(const pl_payload& p);                   // JSON and attachment data referenced

  // Writes the frame with sendmsg (gathering the referenced bytes), whole, holding `mu` so frames of several threads never interleave.
  // False when the peer is gone (or the socket failed).
  bool send(int fd, std::mutex& mu);

 private:
  struct Segment {
    const char* external;  // null: owned_[offset, offset + size)
    std::size_t offset, size;
  };
  void append_owned(const void* data, std::size_t size);
  std::string owned_;
  std::vector<Segment> segments_;
  std::size_t body_size_ = 0;
};

// A received frame. Decoded payloads and strings point into its body, so they live as long as it.
struct Frame {
  FrameType type{};
  std::uint64_t id = 0;
  std::string body;
};

// Reads one whole frame (blocking). Empty at end of stream or on a read error.
std::optional<Frame> read_frame(int fd);

// A payload read out of a frame: the pl_payload view points into the frame's body.
struct WirePayload {
  std::vector<pl_attachment> attachments;
  std::vector<std::string> names;  // NUL-terminated copies for pl_attachment's C strings
  pl_payload view{};
};

// Reads fields in the order they were written. A frame that is too short sets failed() and yields
// zeros from then on, so a reader checks once at the end.
class FrameReader {
 public:
  explicit FrameReader(const Frame& frame) : data_(frame.body), pos_(0) {}
  std::uint32_t u32();
  std::uint64_t u64();
  std::int64_t i64() { return static_cast<std::int64_t>(u64()); }
  std::string str();
  std::string_view bytes();  // view into the frame body
  void payload(WirePayload& out);
  bool failed() const { return failed_; }

 private:
  bool take(std::size_t n);
  std::string_view data_;
  std::size_t pos_;
  bool failed_ = false;
};

}  // namespace pipelined::isolation
