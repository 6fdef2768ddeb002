// StepInvariants (rung 2 of the fault ladder): the spike checks against the window of accepted
// steps, and the window's export and restore that checkpoints carry across a resume or rollback.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "runtime/fault_ladder.hpp"

namespace perigee::runtime {
namespace {

TEST(StepInvariants, SpikeChecksWaitForHalfTheWindow) {
  StepInvariants inv(2.0, 3.0, 4);
  EXPECT_TRUE(inv.check(std::nan(""), 1.0).triggered);  // non-finite: always
  EXPECT_TRUE(inv.check(1.0, std::numeric_limits<double>::infinity()).triggered);
  EXPECT_FALSE(inv.check(100.0, 100.0).triggered);  // empty window: no spike check
  inv.accept(1.0, 1.0);
  EXPECT_FALSE(inv.check(100.0, 100.0).triggered);  // 1 of the 2 needed
  inv.accept(1.0, 1.0);
  EXPECT_TRUE(inv.check(2.5, 1.0).triggered);  // loss > 2 x mean 1
  EXPECT_TRUE(inv.check(1.0, 3.5).triggered);  // norm > 3 x mean 1
  EXPECT_FALSE(inv.check(1.9, 2.9).triggered);
}

// The thresholds scale the window's mean, not its newest, oldest, largest or smallest entry: a window
// of 1, 2, 3, 6 (mean 3) puts each probe between the mean's threshold and the others'.
TEST(StepInvariants, ThresholdsScaleTheWindowMean) {
  StepInvariants inv(2.0, 3.0, 4);
  for (double x : {1.0, 2.0, 3.0, 6.0}) inv.accept(x, 2.0 * x);  // loss mean 3, norm mean 6
  EXPECT_TRUE(inv.check(6.5, 1.0).triggered);                    // > 2 x 3, < 2 x 6 (newest, largest)
  EXPECT_FALSE(inv.check(5.9, 1.0).triggered);   // < 2 x 3, > 2 x 1 and 2 x 2 (oldest, smallest)
  EXPECT_TRUE(inv.check(1.0, 18.5).triggered);   // > 3 x 6, < 3 x 12
  EXPECT_FALSE(inv.check(1.0, 17.5).triggered);  // < 3 x 6, > 3 x 2 and 3 x 4
  // The window keeps the newest 4: one more entry drops the 1 (mean (2+3+6+9)/4 = 5).
  inv.accept(9.0, 18.0);
  EXPECT_FALSE(inv.check(9.9, 1.0).triggered);
  EXPECT_TRUE(inv.check(10.1, 1.0).triggered);
}

TEST(StepInvariants, WindowKeepsTheNewestStepsOldestFirst) {
  StepInvariants inv(2.0, 2.0, 3);
  for (int i = 1; i <= 5; ++i) inv.accept(i, 10.0 * i);
  const InvariantWindow w = inv.window();
  EXPECT_EQ(w.losses, (std::vector<double>{3.0, 4.0, 5.0}));
  EXPECT_EQ(w.grad_norms, (std::vector<double>{30.0, 40.0, 50.0}));
}

TEST(StepInvariants, RestoreGivesTheSameVerdictsAsTheRunItCameFrom) {
  StepInvariants original(2.0, 2.0, 4), restored(2.0, 2.0, 4);
  for (double x : {1.0, 1.2, 0.9, 1.1, 1.0}) original.accept(x, x);
  ASSERT_TRUE(restored.restore(original.window()).is_ok());
  EXPECT_EQ(restored.window().losses, original.window().losses);
  for (double probe : {1.0, 2.05, 2.2, 3.0})
    EXPECT_EQ(restored.check(probe, 1.0).triggered, original.check(probe, 1.0).triggered) << probe;
  // The restored window replaces whatever was there (a rollback undoes the later steps).
  restored.accept(50.0, 50.0);
  ASSERT_TRUE(restored.restore(original.window()).is_ok());
  EXPECT_EQ(restored.window().losses, original.window().losses);
  // An empty window (a checkpoint without one) empties it.
  ASSERT_TRUE(restored.restore({}).is_ok());
  EXPECT_TRUE(restored.window().losses.empty());
  EXPECT_FALSE(restored.check(100.0, 100.0).triggered);
}

TEST(StepInvariants, RestoreTrimsToASmallerWindow) {
  StepInvariants inv(2.0, 2.0, 2);
  ASSERT_TRUE(inv.restore({{1.0, 2.0, 3.0, 4.0}, {5.0, 6.0, 7.0, 8.0}}).is_ok());
  EXPECT_EQ(inv.window().losses, (std::vector<double>{3.0, 4.0}));
  EXPECT_EQ(inv.window().grad_norms, (std::vector<double>{7.0, 8.0}));
}

TEST(StepInvariants, RestoreRefusesMismatchedOrNonFiniteWindowsAndKeepsItsOwn) {
  StepInvariants inv(2.0, 2.0, 4);
  inv.accept(1.0, 2.0);
  Status s = inv.restore({{1.0, 2.0}, {1.0}});
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("2 losses but 1 gradient norms"), std::string::npos) << s.message();
  s = inv.restore({{1.0, std::nan("")}, {1.0, 1.0}});
  ASSERT_FALSE(s.is_ok());
  EXPECT_NE(s.message().find("step 1 of 2 is not finite"), std::string::npos) << s.message();
  EXPECT_EQ(inv.window().losses, (std::vector<double>{1.0}));
  EXPECT_EQ(inv.window().grad_norms, (std::vector<double>{2.0}));
}

}  // namespace
}  // namespace perigee::runtime
