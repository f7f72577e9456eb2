// ConfigStore: atomic generations, digest-checked reads, pruning, pending confirm.
#include <edge/mgmt/config_store.h>
#include <edge/mgmt/error.h>
#include <edge/mgmt/properties.h>
#include <edge/test/process.h>
#include <edge/test/softhsm_fixture.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "store_test_util.h"

namespace edge::mgmt {
namespace {

namespace fs = std::filesystem;

using store_test::gen;
using store_test::gen_file;

class ConfigStoreTest : public ::testing::Test {
 protected:
  edge::test::TempDir tmp{"edge-store"};
  fs::path dir = tmp.path() / "config";
};

TEST_F(ConfigStoreTest, FirstBootIsEmptyAndDirectoryIsPrivate) {
  ConfigStore s(dir);
  EXPECT_FALSE(s.latest().has_value());
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST_F(ConfigStoreTest, CommitLatestGetAndPrune) {
  ConfigStore s(dir, 3);
  for (std::uint64_t n = 1; n <= 5; ++n) s.commit(gen(n, static_cast<std::uint32_t>(10 * n)));
  ASSERT_TRUE(s.latest());
  EXPECT_EQ(s.latest()->generation(), 5u);
  EXPECT_EQ(s.latest()->config().sip().flow_timer(), 50u);
  const auto all = s.list();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all.front().generation(), 3u);
  EXPECT_FALSE(s.get(2).has_value());
  EXPECT_FALSE(fs::exists(gen_file(dir, 1)));
  // Only latest+1 may be committed.
  try {
    s.commit(gen(7));
    FAIL() << "a gap was committed";
  } catch (const MgmtError& e) {
    EXPECT_EQ(e.code(), ErrorCode::internal);
  }
  // A reopened store sees the same.
  ConfigStore again(dir, 3);
  EXPECT_EQ(again.latest()->generation(), 5u);
}

TEST_F(ConfigStoreTest, CorruptedNewestFileLosesToThePreviousGeneration) {
  {
    ConfigStore s(dir);
    s.commit(gen(1));
    s.commit(gen(2, 99));
  }
  const auto f = gen_file(dir, 2);
  std::string bytes = edge::test::read_file(f);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x01);
  edge::test::write_file(f, bytes);
  ConfigStore s(dir);
  ASSERT_TRUE(s.latest());
  EXPECT_EQ(s.latest()->generation(), 1u);
  EXPECT_FALSE(s.get(2).has_value());
  // The damaged file stays (evidence, until pruned): the next commit comes after it.
  EXPECT_EQ(s.next_generation(), 3u);
  EXPECT_THROW(s.commit(gen(2, 42)), MgmtError);
  s.commit(gen(3, 42));
  EXPECT_EQ(s.latest()->config().sip().flow_timer(), 42u);
  EXPECT_TRUE(fs::exists(f));
  const StoreCheck c = s.check();
  EXPECT_FALSE(c.newest_refused());
  ASSERT_EQ(c.refused.size(), 1u);
  EXPECT_EQ(c.refused[0].generation, 2u);
}

TEST_F(ConfigStoreTest, TruncatedFileIsNeverHalfRead) {
  {
    ConfigStore s(dir);
    s.commit(gen(1));
    s.commit(gen(2));
  }
  const auto f = gen_file(dir, 2);
  const std::string bytes = edge::test::read_file(f);
  edge::test::write_file(f, bytes.substr(0, bytes.size() - 5));
  ConfigStore s(dir);
  EXPECT_EQ(s.latest()->generation(), 1u);
  EXPECT_EQ(s.list().size(), 1u);
}

TEST_F(ConfigStoreTest, StrayTempFilesAreRemovedAndIgnored) {
  {
    ConfigStore s(dir);
    s.commit(gen(1));
  }
  // A write cut short before its rename, with a valid-looking name inside.
  edge::test::write_file(gen_file(dir, 2).string() + ".tmp", "garbage");
  ConfigStore s(dir);
  EXPECT_FALSE(fs::exists(gen_file(dir, 2).string() + ".tmp"));
  EXPECT_EQ(s.latest()->generation(), 1u);
}

TEST_F(ConfigStoreTest, PendingConfirmAndDiscard) {
  ConfigStore s(dir);
  s.commit(gen(1));
  s.write_pending(gen(2, 77));
  ASSERT_TRUE(s.pending());
  EXPECT_EQ(s.latest()->generation(), 1u) << "pending is not committed";
  s.confirm_pending();
  EXPECT_FALSE(s.pending());
  EXPECT_EQ(s.latest()->generation(), 2u);
  s.write_pending(gen(3));
  s.discard_pending();
  EXPECT_FALSE(s.pending());
  EXPECT_EQ(s.latest()->generation(), 2u);
  s.discard_pending();  // nothing pending: no error
}

TEST_F(ConfigStoreTest, AtomicWriteReplacesWholeFile) {
  fs::create_directories(dir);
  write_file_atomically(dir / "x", "first version, longer");
  write_file_atomically(dir / "x", "second");
  EXPECT_EQ(edge::test::read_file(dir / "x"), "second");
  EXPECT_FALSE(fs::exists(dir / "x.tmp"));
}

}  // namespace
}  // namespace edge::mgmt
