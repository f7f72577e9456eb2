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
using ::testing::AllOf;
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

edge::images::InstallOptions opts(bool force, std::uint32_t tries, bool allow_downgrade = false) {
  edge::images::InstallOptions o;
  o.force = force;
  o.tries = tries;
  o.allow_downgrade = allow_downgrade;
  return o;
}

class BundleTest : public ::testing::Test {
 protected:
  fs::path make(const std::string& version, const std::string& name = "b.bundle",
                std::uint32_t rollback = 0) {
    spit(dir.path() / "prog", std::string(200000, 'x') + "program");
    fs::permissions(dir.path() / "prog", fs::perms::owner_all);
    spit(dir.path() / "conf", "key = value\n");
    edge::images::BuildRequest req{kCompat,
                                   version,
                                   "firmware",
                                   1790000000,
                                   {{"bin/prog", dir.path() / "prog"}, {"etc/conf", dir.path() / "conf"}},
                                   dir.path() / name,
                                   rollback};
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
  EXPECT_EQ(store.install(v2, opts(false, 2)).slot, 'b');
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
  EXPECT_EQ(store.install(v1, opts(true, 3)).slot, 'a');
}

// Issue 18: the rollback index is signed, stored with the slot state when a
// slot is committed, and a bundle below it is refused even with --force
// (force); only allow_downgrade passes, and that lands in the audit log.
TEST_F(BundleTest, RollbackIndexRefusesOlderBundlesEvenWithForce) {
  const auto r1 = edge::images::verify_bundle(make("1.0", "r1.bundle", 1), key.trust(), kCompat);
  const auto r3 = edge::images::verify_bundle(make("1.1", "r3.bundle", 3), key.trust(), kCompat);
  const auto r2 = edge::images::verify_bundle(make("2.0", "r2.bundle", 2), key.trust(), kCompat);
  EXPECT_EQ(r3.manifest.rollback, 3u);
  EXPECT_EQ(r1.manifest.rollback, 1u);
  SlotStore store(dir.path() / "root");
  EXPECT_EQ(store.install(r1, {}).slot, 'a');
  store.boot();
  store.mark_good();
  EXPECT_EQ(store.status().rollback, 1u);
  EXPECT_EQ(store.status().a.rollback, 1u);
  EXPECT_EQ(store.install(r3, {}).slot, 'b');
  // Installed, not committed: the stored index is still the committed one.
  EXPECT_EQ(store.status().rollback, 1u);
  EXPECT_EQ(store.status().b.rollback, 3u);
  store.boot();
  store.mark_good();
  EXPECT_EQ(store.status().rollback, 3u);
  // A newer version with a lower rollback index, and an older one: refused,
  // --force or not, and the slot state is unchanged.
  const std::string before = slurp(store.root() / "slots.state");
  for (const bool force : {false, true}) {
    for (const auto* b : {&r2, &r1}) {
      EXPECT_THAT(
          [&] {
            store.install(*b, opts(force, 3));
          },
          ::testing::ThrowsMessage<ImageError>(
              AllOf(HasSubstr("below the stored rollback index 3"), HasSubstr("--allow-downgrade"))))
          << "force=" << force << " version " << b->manifest.version;
    }
  }
  EXPECT_EQ(slurp(store.root() / "slots.state"), before);
  const std::string audit_before = slurp(store.root() / "audit.log");
  EXPECT_EQ(audit_before.find("downgrade=allowed"), std::string::npos) << audit_before;
  // The separate permission passes, is reported and written to the audit log
  // first; committing the older slot never lowers the stored index.
  const auto r = store.install(r1, opts(false, 3, true));
  EXPECT_TRUE(r.downgrade);
  EXPECT_EQ(r.slot, 'a');
  const std::string audit = slurp(store.root() / "audit.log");
  EXPECT_THAT(audit, HasSubstr("action=install"));
  EXPECT_THAT(audit, HasSubstr("slot=a version=1.0 rollback=1 stored_rollback=3 force=no downgrade=allowed"));
  store.boot();
  store.mark_good();
  EXPECT_EQ(store.status().rollback, 3u);
  EXPECT_THAT(
      [&] {
        store.install(r2, opts(true, 3));
      },
      ::testing::ThrowsMessage<ImageError>(HasSubstr("below the stored rollback index 3")));
}

TEST_F(BundleTest, RollbackLineIsSignedAndHasOneSpelling) {
  const auto b = edge::images::verify_bundle(make("1.0", "r.bundle", 7), key.trust(), kCompat);
  const std::string text = edge::images::serialize_manifest(b.manifest);
  EXPECT_THAT(text, HasSubstr("\nkey firmware\nrollback 7\nfile "));
  EXPECT_EQ(edge::images::parse_manifest(text).rollback, 7u);
  // Index 0 has no line; "rollback 0", "rollback 07" and junk are refused.
  const auto zero = edge::images::verify_bundle(make("1.0", "z.bundle"), key.trust(), kCompat);
  EXPECT_EQ(edge::images::serialize_manifest(zero.manifest).find("rollback"), std::string::npos);
  for (const char* bad : {"rollback 0", "rollback 07", "rollback -1", "rollback x", "rollback 4294967296"}) {
    std::string t = text;
    t.replace(t.find("rollback 7"), 10, bad);
    EXPECT_THAT([&] { edge::images::parse_manifest(t); },
                ::testing::ThrowsMessage<ImageError>(HasSubstr("manifest line 6: rollback index")))
        << bad;
  }
  // The index is covered by the signature: raising it in a bundle breaks it.
  std::string bytes = slurp(dir.path() / "r.bundle");
  bytes[bytes.find("rollback 7") + 9] = '9';
  spit(dir.path() / "raised.bundle", bytes);
  EXPECT_THAT(verify_error(dir.path() / "raised.bundle"), HasSubstr("signature does not verify"));
}

TEST(SlotStateFile, StrictParse) {
  const std::string good =
      "edge-slots 2\nactive a\nbooted a\nrollback 4\nslot a good 1.0 0 4\nslot b trying 2.0 3 5\n";
  EXPECT_EQ(edge::images::serialize_state(edge::images::parse_state(good)), good);
  EXPECT_EQ(edge::images::parse_state(good).rollback, 4u);
  EXPECT_EQ(edge::images::parse_state(good).b.rollback, 5u);
  // Format 1 (before rollback indices) reads as index 0 and is written as format 2.
  const std::string v1 = "edge-slots 1\nactive a\nbooted a\nslot a good 1.0 0\nslot b trying 2.0 3\n";
  EXPECT_EQ(edge::images::serialize_state(edge::images::parse_state(v1)),
            "edge-slots 2\nactive a\nbooted a\nrollback 0\nslot a good 1.0 0 0\nslot b trying 2.0 3 0\n");
  for (const char* bad : {"rollback -", "rollback 04", "rollbak 4"}) {
    std::string t = good;
    t.replace(t.find("rollback 4"), 10, bad);
    EXPECT_THROW(edge::images::parse_state(t), ImageError) << bad;
  }
  EXPECT_THROW(
      edge::images::parse_state(
          "edge-slots 2\nactive a\nbooted a\nrollback 4\nslot a good 1.0 0\nslot b trying 2.0 3 5\n"),
      ImageError);
  EXPECT_THROW(edge::images::parse_state(good.substr(0, good.size() - 1)), ImageError);
  EXPECT_THROW(
      edge::images::parse_state("edge-slots 1\nactive b\nbooted a\nslot a good 1.0 0\nslot b trying 2.0 3\n"),
      ImageError);
  EXPECT_THROW(
      edge::images::parse_state("edge-slots 1\nactive a\nbooted a\nslot a good 1.0 0\nslot b wild 2.0 3\n"),
      ImageError);
}

}  // namespace
