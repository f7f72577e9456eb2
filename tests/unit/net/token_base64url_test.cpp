// Strict unpadded base64url: RFC 4648 vectors, canonical-only decoding, SIP URI user-part charset.
#include <edge/net/token/base64url.h>

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace edge::flow {
namespace {

std::string encode(std::string_view bytes) {
  std::string out(base64url_encoded_size(bytes.size()), '\0');
  const auto n = base64url_encode({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, out);
  EXPECT_EQ(n, out.size());
  return out;
}

// Returns the decoded bytes, or "<invalid>".
std::string decode(std::string_view text) {
  std::vector<std::uint8_t> out(text.size());
  const auto n = base64url_decode(text, out);
  if (n < 0) return "<invalid>";
  return std::string(out.begin(), out.begin() + n);
}

TEST(Base64url, Rfc4648VectorsWithoutPadding) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
      {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
  for (auto [plain, text] : vectors) {
    EXPECT_EQ(encode(plain), text);
    EXPECT_EQ(decode(text), plain);
  }
}

TEST(Base64url, UsesDashAndUnderscoreNotPlusAndSlash) {
  EXPECT_EQ(encode("\xfb\xff"), "-_8");
  EXPECT_EQ(decode("-_8"), "\xfb\xff");
  EXPECT_EQ(decode("+/8"), "<invalid>");
}

TEST(Base64url, RejectsPaddingWhitespaceAndImpossibleLengths) {
  for (const char* bad : {"Zg==", "Zm8=", "Zm9v\n", " Zm9v", "Zm 9v", "Z", "Zm9vY", "Zm9v="}) {
    EXPECT_EQ(decode(bad), "<invalid>") << bad;
  }
  EXPECT_EQ(decode(std::string_view("Zm\0v", 4)), "<invalid>");
  EXPECT_EQ(decode(std::string_view("Zm9v\0\0\0\0", 8)), "<invalid>");
}

TEST(Base64url, RejectsNonCanonicalTrailingBits) {
  // "Zg" is the one text for "f"; "Zh".."Zv" carry the same byte with stray bits.
  EXPECT_EQ(decode("Zg"), "f");
  for (char c : std::string("hijklmnopqrstuv")) {
    EXPECT_EQ(decode(std::string("Z") + c), "<invalid>") << c;
  }
  EXPECT_EQ(decode("Zm8"), "fo");
  EXPECT_EQ(decode("Zm9"), "<invalid>");
}

TEST(Base64url, AcceptsExactlyTheSixtyFourCharacters) {
  int accepted = 0;
  for (int c = 0; c < 256; ++c) {
    const char ch = static_cast<char>(c);
    const bool expect = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                        ch == '-' || ch == '_';
    EXPECT_EQ(is_base64url_char(ch), expect) << c;
    accepted += expect;
    // Decoding agrees with the predicate in every position of a quad.
    for (int pos = 0; pos < 4; ++pos) {
      std::string text = "AAAA";
      text[static_cast<std::size_t>(pos)] = ch;
      EXPECT_EQ(decode(text) != "<invalid>", expect) << c << " at " << pos;
    }
  }
  EXPECT_EQ(accepted, 64);
}

// RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ),
// unreserved = alphanum / mark, mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")".
TEST(Base64url, EveryCharacterIsAnUnescapedSipUserCharacter) {
  const std::string alphanum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  const std::string unreserved = alphanum + "-_.!~*'()";
  for (int c = 0; c < 256; ++c) {
    if (is_base64url_char(static_cast<char>(c))) {
      EXPECT_NE(unreserved.find(static_cast<char>(c)), std::string::npos) << c;
    }
  }
}

TEST(Base64url, RandomRoundTripsAndOutputBounds) {
  std::mt19937 rng(42);
  for (std::size_t len = 0; len < 100; ++len) {
    std::vector<std::uint8_t> in(len);
    for (auto& b : in) b = static_cast<std::uint8_t>(rng());
    std::string text(base64url_encoded_size(len), '\0');
    ASSERT_EQ(base64url_encode(in, text), text.size());
    EXPECT_TRUE(base64url_valid_length(text.size()));
    std::vector<std::uint8_t> back(base64url_decoded_size(text.size()));
    ASSERT_EQ(base64url_decode(text, back), static_cast<std::ptrdiff_t>(len));
    EXPECT_EQ(back, in);
    if (len > 0) {
      // Too small an output buffer is refused, not overrun.
      std::vector<std::uint8_t> small(len - 1);
      EXPECT_EQ(base64url_decode(text, small), -1);
      std::string short_text(text.size() - 1, '\0');
      EXPECT_EQ(base64url_encode(in, short_text), 0u);
    }
  }
}

}  // namespace
}  // namespace edge::flow
