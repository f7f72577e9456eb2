// Bundle format and slot store without an HSM: a software P-256 key signs, so every byte can be attacked
// fast.
#include <edge/images/bundle.h>
#include <edge/images/slots.h>
#include <edge/test/process.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
using edge::images::ImageError;
using edge::images::SlotState;
using edge::images::SlotStore;
using edge::images::TrustKey;
using ::testing::HasSubstr;

constexpr const char* kCompat = "unit-product";

// A software key stands in for the HSM here: these tests are about the format.
struct SoftKey {
  SoftKey() : pkey(EVP_EC_gen("P-256")) {}
  ~SoftKey() { EVP_PKEY_free(pkey); }
  std::vector<std::uint8_t> sign(std::span<const std::uint8_t> data) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    std::size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey);
    EVP_DigestSign(ctx, nullptr, &len, data.data(), data.size());
    std::vector<std::uint8_t> sig(len);
    EVP_DigestSign(ctx, sig.data(), &len, data.data(), data.size());
    EVP_MD_CTX_free(ctx);
    sig.resize(len);
    return sig;
  }
  TrustKey trust() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(bio, pkey);
    char* p = nullptr;
    const long n = BIO_get_mem_data(bio, &p);
    TrustKey t = TrustKey::from_pem(std::string(p, static_cast<std::size_t>(n)), "test key");
    BIO_free(bio);
    return t;
  }
  EVP_PKEY* pkey;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void spit(const fs::path& p, const std::string& s) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << s;
}

class BundleTest : public ::testing::Test {
 protected:
  fs::path make(const std::string& version, const std::string& name = "b.bundle") {
    spit(dir.path() / "prog", std::string(200000, 'x') + "program");
    fs::permissions(dir.path() / "prog", fs::perms::owner_all);
    spit(dir.path() / "conf", "key = value\n");
    edge::images::BuildRequest req{kCompat,
                                   version,
                                   "firmware",
                                   1790000000,
                                   {{"bin/prog", dir.path() / "prog"}, {"etc/conf", dir.path() / "conf"}},
                                   dir.path() / name};
    edge::images::build_bundle(req, [&](auto m) { return key.sign(m); });
    return req.out;
  }
  std::string verify_error(const fs::path& p) {
    try {
      edge::images::verify_bundle(p, key.trust(), kCompat);
    } catch (const ImageError& e) {
      return e.what();
    }
    return "accepted";
  }
  edge::test::TempDir dir;
  SoftKey key;
};

TEST_F(BundleTest, RoundTripAndManifestText) {
  const auto b = edge::images::verify_bundle(make("1.2.3"), key.trust(), kCompat);
  EXPECT_EQ(b.manifest.version, "1.2.3");
  EXPECT_EQ(b.manifest.built, "2026-09-21T14:13:20Z");
  ASSERT_EQ(b.manifest.files.size(), 2u);
  EXPECT_EQ(b.manifest.files[0].mode, 0755u);
  EXPECT_EQ(b.manifest.files[1].mode, 0644u);
  EXPECT_EQ(edge::images::parse_manifest(edge::images::serialize_manifest(b.manifest)).files[1].path,
            "etc/conf");
}

TEST_F(BundleTest, EveryTruncationAndEveryFlippedByteIsRefused) {
  const fs::path good = make("1.0");
  const std::string bytes = slurp(good);
  const fs::path bad = dir.path() / "bad.bundle";
  // Each region of the file: header, manifest, signature, payload (sampled).
  for (std::size_t i = 0; i < bytes.size(); i += (i < 2000 ? 1 : 997)) {
    std::string t = bytes;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    spit(bad, t);
    EXPECT_NE(verify_error(bad), "accepted") << "flipped byte " << i;
    spit(bad, bytes.substr(0, i));
    EXPECT_THAT(verify_error(bad), HasSubstr("truncated")) << "cut at " << i;
  }
}

TEST_F(BundleTest, HostileLengthsAreRefusedBeforeAnyAllocation) {
  std::string bytes = slurp(make("1.0"));
  const fs::path bad = dir.path() / "bad.bundle";
  bytes[12] = bytes[13] = bytes[14] = bytes[15] = '\xff';
  spit(bad, bytes);
  EXPECT_THAT(verify_error(bad), HasSubstr("manifest length 4294967295 out of range"));
  bytes = slurp(make("1.0"));
  for (int i = 24; i < 32; ++i) bytes[static_cast<std::size_t>(i)] = '\x7f';
  spit(bad, bytes);
  EXPECT_THAT(verify_error(bad), HasSubstr("payload length"));
}

TEST_F(BundleTest, ManifestParserRefusesPathsThatEscapeTheSlot) {
  const std::string head = "edge-bundle 1\ncompatible x\nversion 1\nbuilt 2026-01-01T00:00:00Z\nkey k\n";
  const std::string hash(64, 'a');
  for (const char* path : {"../etc/passwd", "/abs", "a//b", "a/./b", "a/", "a b", "x/../../y"}) {
    EXPECT_THROW(edge::images::parse_manifest(head + "file 0644 1 " + hash + " " + path + "\n"), ImageError)
        << path;
  }
  EXPECT_THROW(
      edge::images::parse_manifest(head + "file 0644 1 " + hash + " a\nfile 0644 1 " + hash + " a/b\n"),
      ImageError);
  EXPECT_THROW(edge::images::parse_manifest(head + "file 4755 1 " + hash + " a\n"), ImageError);
  EXPECT_NO_THROW(edge::images::parse_manifest(head + "file 0755 1 " + hash + " bin/a\n"));
}

// Issue 18: a mode another user could write to, or one with setuid/setgid/sticky, is refused with its reason.
TEST_F(BundleTest, ManifestParserRefusesWritableAndSetuidModes) {
  const std::string head = "edge-bundle 1\ncompatible x\nversion 1\nbuilt 2026-01-01T00:00:00Z\nkey k\n";
  const std::string hash(64, 'a');
  const auto error = [&](const std::string& mode) {
    try {
      edge::images::parse_manifest(head + "file " + mode + " 1 " + hash + " bin/a\n");
    } catch (const ImageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (const char* mode : {"0775", "0757", "0666", "0664", "0646", "0777", "0620", "0602"})
    EXPECT_THAT(error(mode), HasSubstr("group- or world-writable")) << mode;
  for (const char* mode : {"4755", "2755", "1755", "6755", "7644"})
    EXPECT_THAT(error(mode), HasSubstr("setuid, setgid or sticky")) << mode;
  for (const char* mode : {"0755", "0644", "0700", "0600", "0444", "0555", "0750"})
    EXPECT_EQ(error(mode), "accepted") << mode;
}

// Found by the bundle fuzz target: "01" parsed as 1, so two texts (two signatures) meant one manifest.
TEST_F(BundleTest, ManifestNumbersHaveOneSpelling) {
  const std::string hash(64, 'a');
  const std::string tail = "compatible x\nversion 1\nbuilt 2026-01-01T00:00:00Z\nkey k\n";
  EXPECT_THROW(edge::images::parse_manifest("edge-bundle 01\n" + tail + "file 0644 1 " + hash + " a\n"),
               ImageError);
  EXPECT_THROW(edge::images::parse_manifest("edge-bundle 1\n" + tail + "file 0644 01 " + hash + " a\n"),
               ImageError);
  const std::string ok =
      "edge-bundle 1\n" + tail + "file 0644 0 " + hash + " a\nfile 0644 10 " + hash + " b\n";
  EXPECT_EQ(edge::images::serialize_manifest(edge::images::parse_manifest(ok)), ok);
}

TEST(Versions, CompareNumerically) {
  EXPECT_LT(edge::images::compare_versions("1.9", "1.10"), 0);
  EXPECT_EQ(edge::images::compare_versions("1.0", "1.0.0"), 0);
  EXPECT_GT(edge::images::compare_versions("2", "1.99.99"), 0);
  EXPECT_FALSE(edge::images::valid_version("1..2"));
  EXPECT_FALSE(edge::images::valid_version("1.2.3.4.5"));
  EXPECT_FALSE(edge::images::valid_version("v1"));
  EXPECT_THROW(edge::images::compare_versions("1", "x"), ImageError);
}

TEST_F(BundleTest, SlotsInstallBootCommitDowngradeAndFallback) {
  SlotStore store(dir.path() / "root");
  const auto v1 = edge::images::verify_bundle(make("1.0", "v1"), key.trust(), kCompat);
  const auto v2 = edge::images::verify_bundle(make("2.0", "v2"), key.trust(), kCompat);
  EXPECT_THAT([&] { store.boot(); }, ::testing::ThrowsMessage<ImageError>(HasSubstr("no bootable slot")));
  EXPECT_EQ(store.install(v1, {}).slot, 'a');
  EXPECT_EQ(store.boot().slot, 'a');
  EXPECT_EQ(store.mark_good(), 'a');
  EXPECT_EQ(store.install(v2, {false, 2}).slot, 'b');
  EXPECT_EQ(slurp(store.slot_dir('b') / "etc/conf"), "key = value\n");
  EXPECT_EQ(store.boot().slot, 'b');
  EXPECT_EQ(store.boot().slot, 'b');
  const auto fallback = store.boot();
  EXPECT_EQ(fallback.slot, 'a');
  EXPECT_TRUE(fallback.fell_back);
  EXPECT_EQ(store.status().b.state, SlotState::bad);
  EXPECT_EQ(store.install(v2, {}).slot, 'b');
  store.boot();
  store.mark_good();
  EXPECT_EQ(store.status().active, 'b');
  EXPECT_THAT([&] { store.install(v1, {}); }, ::testing::ThrowsMessage<ImageError>(HasSubstr("downgrade")));
  EXPECT_EQ(store.install(v1, {true, 3}).slot, 'a');
}

TEST(SlotStateFile, StrictParse) {
  const std::string good = "edge-slots 1\nactive a\nbooted a\nslot a good 1.0 0\nslot b trying 2.0 3\n";
  EXPECT_EQ(edge::images::serialize_state(edge::images::parse_state(good)), good);
  EXPECT_THROW(edge::images::parse_state(good.substr(0, good.size() - 1)), ImageError);
  EXPECT_THROW(
      edge::images::parse_state("edge-slots 1\nactive b\nbooted a\nslot a good 1.0 0\nslot b trying 2.0 3\n"),
      ImageError);
  EXPECT_THROW(
      edge::images::parse_state("edge-slots 1\nactive a\nbooted a\nslot a good 1.0 0\nslot b wild 2.0 3\n"),
      ImageError);
}

}  // namespace
