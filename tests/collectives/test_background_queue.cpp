// BackgroundQueue: jobs run in order on one worker thread; the first error is kept, later jobs are
// skipped and drain() hands the error over once; the destructor runs what is still queued.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "collectives/background_queue.hpp"

namespace perigee::collectives {
namespace {

TEST(BackgroundQueue, RunsJobsInOrderOffTheCallersThread) {
  BackgroundQueue q;
  std::vector<int> order;
  std::thread::id worker;
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(q.submit([&order, &worker, i] {
                   order.push_back(i);
                   worker = std::this_thread::get_id();
                   return Status::ok();
                 }).is_ok());
  }
  ASSERT_TRUE(q.drain().is_ok());
  ASSERT_EQ(order.size(), 50u);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
  EXPECT_NE(worker, std::this_thread::get_id());
  EXPECT_EQ(q.pending(), 0u);
  EXPECT_EQ(q.completed(), 50u);
}

TEST(BackgroundQueue, SubmitReturnsWhileAJobRuns) {
  BackgroundQueue q;
  std::atomic<bool> release{false};
  ASSERT_TRUE(q.submit([&release] {
                 while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                 return Status::ok();
               }).is_ok());
  EXPECT_EQ(q.pending(), 1u);  // cannot have finished: it waits for us
  EXPECT_TRUE(q.poll().is_ok());
  release = true;
  ASSERT_TRUE(q.drain().is_ok());
  EXPECT_EQ(q.completed(), 1u);
}

TEST(BackgroundQueue, FirstErrorIsKeptLaterJobsSkippedAndReportedOnce) {
  BackgroundQueue q;
  int ran = 0;
  ASSERT_TRUE(q.submit([&ran] {
                 ++ran;
                 return Status::ok();
               }).is_ok());
  ASSERT_TRUE(q.submit([&ran] {
                 ++ran;
                 return make_error(StatusCode::kUnavailable, "link 3-4 down");
               }).is_ok());
  ASSERT_TRUE(q.submit([&ran] {
                 ++ran;
                 return Status::ok();
               }).is_ok());
  Status st = q.drain();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message(), "link 3-4 down");
  EXPECT_EQ(ran, 2) << "the job after the failure is skipped";
  EXPECT_EQ(q.completed(), 2u);
  EXPECT_TRUE(q.poll().is_ok());
  EXPECT_TRUE(q.drain().is_ok());
  ASSERT_TRUE(q.submit([&ran] {
                 ++ran;
                 return Status::ok();
               }).is_ok());
  ASSERT_TRUE(q.drain().is_ok());
  EXPECT_EQ(ran, 3) << "after drain() handed the error over, jobs run again";
}

TEST(BackgroundQueue, PollSeesAnErrorWithoutWaiting) {
  BackgroundQueue q;
  ASSERT_TRUE(q.submit([] { return make_error(StatusCode::kInternal, "boom"); }).is_ok());
  while (q.pending() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(q.poll().code(), StatusCode::kInternal);
  EXPECT_EQ(q.poll().code(), StatusCode::kInternal) << "poll keeps it";
  EXPECT_EQ(q.drain().code(), StatusCode::kInternal);
}

TEST(BackgroundQueue, DestructorRunsWhatIsQueued) {
  std::atomic<int> ran{0};
  {
    BackgroundQueue q;
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(q.submit([&ran] {
                     std::this_thread::sleep_for(std::chrono::milliseconds(2));
                     ++ran;
                     return Status::ok();
                   }).is_ok());
    }
  }
  EXPECT_EQ(ran.load(), 5);
  BackgroundQueue never_used;  // no thread was started: destroying it is immediate
  EXPECT_EQ(never_used.pending(), 0u);
}

}  // namespace
}  // namespace perigee::collectives
