// The frame codec between the daemon and a runner (daemon/isolation/wire.h): what is written is read
// back in order, large fields travel by reference, and a truncated frame is detected, not misread.
#include "daemon/isolation/wire.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <thread>

namespace {

using namespace pipelined::isolation;

struct SocketPair {
  int fd[2];
  SocketPair() { EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0); }
  ~SocketPair() {
    ::close(fd[0]);
    ::close(fd[1]);
  }
};

TEST(Wire, FieldsAndPayloadsRoundTrip) {
  SocketPair s;
  std::mutex mu;
  const std::string json = R"({"items":[1,2,3]})";
  const std::string image(3 << 20, '\x7f');  // larger than any socket buffer: written while read
  const std::string small = "tiny";
  const pl_attachment attachments[] = {{"image", "image/png", reinterpret_cast<const std::uint8_t*>(image.data()), image.size()},
                                       {"note", "text/plain", reinterpret_cast<const std::uint8_t*>(small.data()), small.size()}};
  const pl_payload payload{json.data(), json.size(), attachments, 2};
  std::thread writer([&] {
    FrameWriter f(FrameType::Run, 42);
    f.i64(-7).u32(9).str("héllo").payload(payload).u64(1ull << 40);
    EXPECT_TRUE(f.send(s.fd[0], mu));
  });
  auto frame = read_frame(s.fd[1]);
  writer.join();
  ASSERT_TRUE(frame);
  EXPECT_EQ(frame->type, FrameType::Run);
  EXPECT_EQ(frame->id, 42u);
  FrameReader in(*frame);
  EXPECT_EQ(in.i64(), -7);
  EXPECT_EQ(in.u32(), 9u);
  EXPECT_EQ(in.str(), "héllo");
  WirePayload p;
  in.payload(p);
  EXPECT_EQ(in.u64(), 1ull << 40);
  ASSERT_FALSE(in.failed());
  EXPECT_EQ(std::string(p.view.json, p.view.json_size), json);
  ASSERT_EQ(p.view.attachment_count, 2u);
  EXPECT_STREQ(p.view.attachments[0].name, "image");
  EXPECT_STREQ(p.view.attachments[0].content_type, "image/png");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.view.attachments[0].data), p.view.attachments[0].size), image);
  EXPECT_STREQ(p.view.attachments[1].name, "note");
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(p.view.attachments[1].data), p.view.attachments[1].size), small);
  EXPECT_FALSE(in.failed());
}

TEST(Wire, ReadingPastTheEndFailsInsteadOfInventing) {
  Frame f;
  f.body = std::string(
      "\x05\x00\x00\x00"
      "abc",
      7);  // a string that claims 5 bytes and has 3
  FrameReader in(f);
  EXPECT_EQ(in.str(), "");
  EXPECT_TRUE(in.failed());
  EXPECT_EQ(in.u32(), 0u);  // and stays failed
  WirePayload p;
  Frame g;
  g.body = std::string(
      "\x00\x00\x00\x00\x00\x00\x00\x00"
      "\xff\xff\xff\x7f",
      12);  // empty JSON, 2^31 attachments
  FrameReader bad(g);
  bad.payload(p);
  EXPECT_TRUE(bad.failed());
}

TEST(Wire, APeerThatIsGoneIsAnErrorNotASignal) {
  int fd[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
  ::close(fd[1]);
  std::mutex mu;
  FrameWriter f(FrameType::Log, 0);
  f.str("nobody listens");
  EXPECT_FALSE(f.send(fd[0], mu));  // EPIPE without SIGPIPE: the test process is still here
  EXPECT_FALSE(read_frame(fd[0]));
  ::close(fd[0]);
}

}  // namespace
