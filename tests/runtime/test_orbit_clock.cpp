// The eclipse policy's orbit clock (orbit_clock.hpp): which epoch a launch takes (the config's, the
// one kept by the run's first launch, or now), and the orbit.json file that keeps it.
#include "runtime/orbit_clock.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/runtime/config_test_util.hpp"

namespace perigee::runtime {
namespace {

namespace fs = std::filesystem;

class OrbitClock : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (fs::temp_directory_path() / ("perigee_orbit_" + std::to_string(::getpid()))).string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    orbit_.altitude_km = 550.0;
    orbit_.beta_deg = 10.0;
    orbit_.phase_deg = 90.0;
    orbit_.time_scale = 60.0;
  }
  void TearDown() override { fs::remove_all(dir_); }
  double resolve(double now, bool resume = true) {
    double epoch = -1.0;
    how_.clear();
    const Status s = resolve_orbit_epoch(orbit_, dir_, resume, now, &epoch, &how_, &warning_);
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    return epoch;
  }
  std::string dir_, how_, warning_;
  OrbitConfig orbit_;
};

TEST_F(OrbitClock, TheFirstLaunchStartsItAndRelaunchesContinueIt) {
  EXPECT_EQ(resolve(1000.0), 1000.0);
  EXPECT_CONTAINS(how_, "started now at phase 90 deg");
  OrbitEpoch kept;
  ASSERT_TRUE(read_orbit_epoch(dir_, &kept).is_ok());
  EXPECT_EQ(kept.epoch_unix, 1000.0);
  EXPECT_TRUE(kept.same_orbit(orbit_));
  // A relaunch 2 hours later (a power cut): the same clock.
  EXPECT_EQ(resolve(8200.0), 1000.0);
  EXPECT_CONTAINS(how_, "continued from");
  EXPECT_CONTAINS(how_, "7200.0 s ago");
  // A run that does not resume starts over, and so does another orbit.
  EXPECT_EQ(resolve(9000.0, /*resume=*/false), 9000.0);
  orbit_.phase_deg = 180.0;
  EXPECT_EQ(resolve(9500.0), 9500.0);
  EXPECT_CONTAINS(how_, "for another orbit");
  for (double OrbitConfig::*key :
       {&OrbitConfig::altitude_km, &OrbitConfig::beta_deg, &OrbitConfig::time_scale}) {
    ASSERT_TRUE(read_orbit_epoch(dir_, &kept).is_ok());
    EXPECT_TRUE(kept.same_orbit(orbit_));
    orbit_.*key += 1.0;
    EXPECT_FALSE(kept.same_orbit(orbit_));
    orbit_.*key -= 1.0;
  }
}

// The stored epoch was taken on a good clock: an unsynchronised one runs this launch alone and the file
// stays for the launches after the sync.
TEST_F(OrbitClock, AClockBehindTheStoredEpochRunsThisLaunchAloneAndKeepsTheFile) {
  EXPECT_EQ(resolve(5000.0), 5000.0);
  EXPECT_TRUE(warning_.empty()) << warning_;
  EXPECT_EQ(resolve(4000.0), 4000.0);  // a relaunch whose clock reads earlier than the first launch
  EXPECT_CONTAINS(warning_, "the system clock is 1000.0 s behind the first launch's epoch");
  EXPECT_CONTAINS(how_, "for this launch only");
  OrbitEpoch kept;
  ASSERT_TRUE(read_orbit_epoch(dir_, &kept).is_ok());
  EXPECT_EQ(kept.epoch_unix, 5000.0);
  EXPECT_EQ(resolve(4500.0), 4500.0);  // still behind: again a clock of its own
  EXPECT_EQ(resolve(9000.0), 5000.0);  // set again: the first launch's clock
  EXPECT_TRUE(warning_.empty()) << warning_;
}

TEST_F(OrbitClock, TheConfigEpochWinsAndIsNotStored) {
  orbit_.epoch_unix = 500.0;
  EXPECT_EQ(resolve(800.0), 500.0);
  EXPECT_CONTAINS(how_, "from the config (300.0 s ago)");
  OrbitEpoch kept;
  EXPECT_EQ(read_orbit_epoch(dir_, &kept).code(), StatusCode::kNotFound);
}

TEST_F(OrbitClock, AMalformedFileIsReplacedWithAWarning) {
  std::ofstream(dir_ + "/orbit.json") << "{\"epoch_unix\": \"yesterday\"}";
  OrbitEpoch kept;
  const Status s = read_orbit_epoch(dir_, &kept);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_CONTAINS(s.message(), "orbit.json: not an orbit clock file (no number \"epoch_unix\")");
  EXPECT_EQ(resolve(1234.5), 1234.5);
  EXPECT_CONTAINS(warning_, "replacing " + dir_ + "/orbit.json: not an orbit clock file");
  ASSERT_TRUE(read_orbit_epoch(dir_, &kept).is_ok());
  EXPECT_EQ(kept.epoch_unix, 1234.5);
  std::ofstream(dir_ + "/orbit.json") << "not json";
  EXPECT_EQ(read_orbit_epoch(dir_, &kept).code(), StatusCode::kIoError);
}

TEST_F(OrbitClock, AnUnwritableFolderIsAnError) {
  double epoch = 0.0;
  std::string how, warning;
  const Status s = resolve_orbit_epoch(orbit_, dir_ + "/missing/folder", true, 1.0, &epoch, &how, &warning);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_CONTAINS(s.message(), "orbit.json");
}

// A write cut between creating orbit.json.tmp and its rename leaves the .tmp: the owner's cleanup
// removes it and keeps the committed orbit.json as it was; nothing left is nothing removed.
TEST_F(OrbitClock, ALeftoverOfACutWriteIsRemovedAndTheClockKept) {
  EXPECT_EQ(resolve(1000.0), 1000.0);
  std::ofstream(dir_ + "/orbit.json.tmp") << "{\"epoch_unix\": 2";  // cut mid-write
  std::string removed = "?";
  ASSERT_TRUE(remove_orbit_clock_leftover(dir_, &removed).is_ok());
  EXPECT_EQ(removed, dir_ + "/orbit.json.tmp");
  EXPECT_FALSE(fs::exists(dir_ + "/orbit.json.tmp"));
  OrbitEpoch kept;
  ASSERT_TRUE(read_orbit_epoch(dir_, &kept).is_ok());
  EXPECT_EQ(kept.epoch_unix, 1000.0);
  EXPECT_EQ(resolve(8200.0), 1000.0);  // the relaunch continues the clock
  ASSERT_TRUE(remove_orbit_clock_leftover(dir_, &removed).is_ok());
  EXPECT_EQ(removed, "");
  EXPECT_TRUE(fs::exists(dir_ + "/orbit.json"));
  // A folder of that name is no leftover of a write: it stays.
  fs::create_directories(dir_ + "/orbit.json.tmp");
  ASSERT_TRUE(remove_orbit_clock_leftover(dir_, &removed).is_ok());
  EXPECT_EQ(removed, "");
  EXPECT_TRUE(fs::is_directory(dir_ + "/orbit.json.tmp"));
}

TEST(UnixNow, IsTheSystemClock) {
  const double now = unix_now();
  EXPECT_GT(now, 1.7e9);  // after 2023
  EXPECT_LT(now, 4.2e9);
}

}  // namespace
}  // namespace perigee::runtime
