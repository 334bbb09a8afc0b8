#include "daemon/endpoint/endpoint.h"

#include <gtest/gtest.h>

#include <array>

namespace pipelined::endpoint {
namespace {

config::EndpointConfig multipart_endpoint(const std::string& field = "file") {
  config::EndpointConfig e;
  e.path = "/translate";
  e.pipeline = "menu";
  e.format = config::RequestFormat::Multipart;
  e.files_field = field;
  return e;
}

const std::string kBinary("\x89PNG\r\n\x1a\n\0\xff\r\n--not-the-boundary", 28);

// What Python requests sends for files={"file": ("menu.png", data, "image/png")}, data={"lang": "ja"}.
std::string requests_style_body() {
  return "--3f1b\r\nContent-Disposition: form-data; name=\"lang\"\r\n\r\nja\r\n"
         "--3f1b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"menu.png\"\r\nContent-Type: image/png\r\n\r\n" +
         kBinary + "\r\n--3f1b--\r\n";
}

TEST(Multipart, BoundaryFromContentType) {
  EXPECT_EQ(std::get<std::string>(multipart_boundary("multipart/form-data; boundary=abc")), "abc");
  EXPECT_EQ(std::get<std::string>(multipart_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\"")), "a b;c");
  EXPECT_EQ(std::get<HttpError>(multipart_boundary("application/json")).status, 415);
  EXPECT_EQ(std::get<HttpError>(multipart_boundary("multipart/form-data")).status, 400);
}

// Parts as {name, filename, content_type, data}, for comparing whole.
std::vector<std::array<std::string, 4>> fields_of(const std::vector<Part>& parts) {
  std::vector<std::array<std::string, 4>> out;
  for (const auto& p : parts) out.push_back({p.name, p.filename, p.content_type, p.data});
  return out;
}

TEST(Multipart, ParsesFieldsAndBinaryFiles) {
  auto parts = std::get<std::vector<Part>>(parse_multipart(requests_style_body(), "3f1b"));
  // CR, LF, NUL and a boundary-like line inside the file survive.
  EXPECT_EQ(fields_of(parts), (std::vector<std::array<std::string, 4>>{{"lang", "", "", "ja"}, {"file", "menu.png", "image/png", kBinary}}));
}

TEST(Multipart, PreambleQuotedNamesAndNoContentType) {
  const std::string body =
      "preamble to ignore\r\n--b\r\ncontent-disposition: form-data; filename=\"a \\\"q\\\".jpg\"; name=\"files\"\r\n\r\nX\r\n"
      "--b\r\nContent-Disposition: form-data; name=files; filename=two.jpg\r\n\r\nYY\r\n--b--";
  auto parts = std::get<std::vector<Part>>(parse_multipart(body, "b"));
  EXPECT_EQ(fields_of(parts), (std::vector<std::array<std::string, 4>>{{"files", "a \"q\".jpg", "", "X"}, {"files", "two.jpg", "", "YY"}}));
}

TEST(Multipart, MalformedBodiesAreErrors) {
  const char* bad[] = {
      "",                                                                       // nothing
      "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nunterminated",  // no closing boundary
      "--b\r\nContent-Disposition: form-data; name=\"x\"",                      // headers never end
      "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",                      // no disposition
      "--b\r\nno colon here\r\n\r\nx\r\n--b--",                                 // bad header line
      "--bX\r\n",                                                               // boundary not followed by CRLF
      "x--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\nx\r\n--b--",   // one byte of preamble (threw out_of_range; fuzz)
  };
  for (const char* body : bad) {
    auto r = parse_multipart(body, "b");
    ASSERT_TRUE(std::holds_alternative<HttpError>(r)) << body;
    EXPECT_EQ(std::get<HttpError>(r).status, 400);
  }
}

TEST(BuildInput, MultipartFilesBecomeAttachmentsAndFieldsJson) {
  auto in = std::get<engine::Payload>(build_input(multipart_endpoint(), "multipart/form-data; boundary=3f1b", requests_style_body()));
  ASSERT_EQ(in.attachments.size(), 1u);
  EXPECT_EQ(in.attachments[0].name, "menu.png");
  EXPECT_EQ(in.attachments[0].content_type, "image/png");
  EXPECT_EQ(*in.attachments[0].data, kBinary);
  EXPECT_EQ(in.json["lang"], "ja");
}

TEST(BuildInput, Errors) {
  auto e = std::get<HttpError>(build_input(multipart_endpoint("files"), "multipart/form-data; boundary=3f1b", requests_style_body()));
  EXPECT_EQ(e.status, 400);
  EXPECT_NE(e.message.find("unexpected file in field 'file'"), std::string::npos) << e.message;
  e = std::get<HttpError>(build_input(multipart_endpoint(), "text/plain", "x"));
  EXPECT_EQ(e.status, 415);
  e = std::get<HttpError>(build_input(multipart_endpoint(), "multipart/form-data; boundary=b",
                                      "--b\r\nContent-Disposition: form-data; name=\"lang\"\r\n\r\nja\r\n--b--"));
  EXPECT_NE(e.message.find("no file in multipart field 'file'"), std::string::npos);
  config::EndpointConfig json_endpoint;
  json_endpoint.format = config::RequestFormat::Json;
  e = std::get<HttpError>(build_input(json_endpoint, "application/json", "{\"a\": "));
  EXPECT_EQ(e.status, 400);
  EXPECT_EQ(std::get<engine::Payload>(build_input(json_endpoint, "application/json; charset=utf-8", "{\"a\": 1}")).json["a"], 1);
}

TEST(StickyKey, HeaderCookieAndJson) {
  engine::Payload input;
  input.json = {{"user_id", "u-7"}, {"n", 5}};
  auto headers = [](std::string_view name) -> std::string {
    if (name == "X-User-Id") return "h-1";
    if (name == "Cookie") return "a=1; uid=c-9; b=2";
    return "";
  };
  EXPECT_EQ(sticky_key("header:X-User-Id", headers, input), "h-1");
  EXPECT_EQ(sticky_key("cookie:uid", headers, input), "c-9");
  EXPECT_EQ(sticky_key("cookie:none", headers, input), "");
  EXPECT_EQ(sticky_key("json:user_id", headers, input), "u-7");
  EXPECT_EQ(sticky_key("json:n", headers, input), "5");
  EXPECT_EQ(sticky_key("", headers, input), "");
}

TEST(Render, FillsStagesAndMeta) {
  engine::RunResult r;
  r.ok = true;
  r.outputs["analysis"].json = {{"medicines", {{{"brand", "Tylenol"}}}}};
  r.outputs["ocr"].json = {{"keywords", {"acetaminophen"}}};
  const nlohmann::json t = {{"medicines", "$stages.analysis/medicines"}, {"kw", "$stages.ocr/keywords"},
                            {"missing", "$stages.ocr/nope"}, {"whole", "$stages.ocr"},
                            {"time", "$meta.elapsed_s"}, {"id", "$meta.request_id"}, {"literal", "x"}};
  auto out = render(t, r, {"req-1", std::chrono::microseconds(1'234'567), {}});
  EXPECT_EQ(out["medicines"][0]["brand"], "Tylenol");
  EXPECT_EQ(out["kw"][0], "acetaminophen");
  EXPECT_TRUE(out["missing"].is_null());
  EXPECT_EQ(out["whole"]["keywords"][0], "acetaminophen");
  EXPECT_DOUBLE_EQ(out["time"].get<double>(), 1.234);
  EXPECT_EQ(out["id"], "req-1");
  EXPECT_EQ(out["literal"], "x");
  EXPECT_FALSE(out.contains("partial"));
}

TEST(Render, PartialResultIsMarked) {
  engine::RunResult r;
  r.partial = true;
  r.missing = {"images"};
  auto out = render({{"categories", "$stages.images/categories"}}, r, {});
  EXPECT_TRUE(out["categories"].is_null());
  EXPECT_EQ(out["partial"], true);
  EXPECT_EQ(out["missing_stages"][0], "images");
  EXPECT_EQ(status_for(r), 200);
}

TEST(Status, ErrorClassesMapToStatuses) {
  engine::RunResult r;
  for (auto [cls, status] : std::vector<std::pair<std::string, int>>{
           {"upstream", 502}, {"rate_limited", 502}, {"malformed", 502}, {"timeout", 504}, {"invalid_input", 422}, {"internal", 500}}) {
    r.error_class = cls;
    EXPECT_EQ(status_for(r), status) << cls;
  }
  EXPECT_EQ(error_body(404, "no such path")["error"]["status"], 404);
}

}  // namespace
}  // namespace pipelined::endpoint
