// Eclipse model: period and shadow length against the reference table (550 km, beta 0: 95.6 min
// and 35.6 min), no shadow at high beta, entry/exit times consistent with the period and with an
// independent 3-D shadow test, the checkpoint time and look-ahead before an entry, and beta from
// elements and a date. The trainer's use of it: DataParallel eclipse tests and e2e.eclipse.
#include "checkpoint/eclipse.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace perigee::checkpoint {
namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kDeg = kPi / 180.0;

EclipseModel model(double altitude_km, double beta_deg, double phase_deg = 0.0) {
  EclipseModel m;
  PERIGEE_CHECK_OR_DIE(EclipseModel::from_beta(altitude_km, beta_deg, phase_deg, &m));
  return m;
}

void expect_within(double got, double want, double rel, const char* what) {
  EXPECT_LE(std::abs(got - want), rel * want)
      << what << ": got " << got << ", want " << want << " +- " << rel * 100 << " %";
}

TEST(Eclipse, Reference550kmBetaZero) {
  const EclipseModel m = model(550.0, 0.0);
  expect_within(m.period_s() / 60.0, 95.6, 0.005, "period (min)");
  expect_within(m.eclipse_duration_s() / 60.0, 35.6, 0.005, "shadow (min)");
  expect_within(m.eclipse_fraction(), 0.372, 0.005, "shadow fraction");
  EXPECT_TRUE(m.has_eclipse());
  std::printf("[ info ] 550 km, beta 0: period %.2f min, shadow %.2f min (%.1f %%), critical beta %.2f deg\n",
              m.period_s() / 60.0, m.eclipse_duration_s() / 60.0, 100.0 * m.eclipse_fraction(),
              m.critical_beta_deg());
}

TEST(Eclipse, ReferenceTableOtherAltitudes) {
  const struct {
    double h, period_min, shadow_min;
  } rows[] = {{400, 92.6, 36.1}, {500, 94.6, 35.8}, {600, 96.7, 35.5}};
  for (const auto& r : rows) {
    const EclipseModel m = model(r.h, 0.0);
    expect_within(m.period_s() / 60.0, r.period_min, 0.005, "period");
    expect_within(m.eclipse_duration_s() / 60.0, r.shadow_min, 0.005, "shadow");
  }
}

TEST(Eclipse, HighBetaHasNoShadow) {
  const EclipseModel m = model(550.0, 75.0);
  EXPECT_NEAR(m.critical_beta_deg(), 67.0, 0.1);
  EXPECT_FALSE(m.has_eclipse());
  EXPECT_EQ(m.eclipse_duration_s(), 0.0);
  EXPECT_FALSE(m.next_shadow(0.0).has_value());
  EXPECT_FALSE(m.next_checkpoint_time(0.0, 60.0).has_value());
  EXPECT_TRUE(m.shadows(0.0, 1e5).empty());
  for (double t = 0; t < m.period_s(); t += 30.0) EXPECT_FALSE(m.in_shadow(t));
  // Shadows shrink as beta grows, and vanish just above the critical angle.
  double last = 1e9;
  for (double beta = 0.0; beta <= 66.0; beta += 6.0) {
    const double d = model(550.0, beta).eclipse_duration_s();
    EXPECT_LT(d, last);
    last = d;
  }
  EXPECT_TRUE(model(550.0, 66.9).has_eclipse());
  EXPECT_FALSE(model(550.0, 67.1).has_eclipse());
  EXPECT_FALSE(model(550.0, -75.0).has_eclipse());
}

TEST(Eclipse, EntryAndExitAreConsistentWithThePeriod) {
  const EclipseModel m = model(550.0, 20.0, 37.0);
  const std::vector<ShadowInterval> s = m.shadows(0.0, 5.0 * m.period_s());
  ASSERT_EQ(s.size(), 5u);
  for (size_t k = 0; k < s.size(); ++k) {
    EXPECT_NEAR(s[k].duration_s(), m.eclipse_duration_s(), 1e-6);
    if (k) {
      EXPECT_NEAR(s[k].entry_s - s[k - 1].entry_s, m.period_s(), 1e-6);
      EXPECT_NEAR(s[k].exit_s - s[k - 1].exit_s, m.period_s(), 1e-6);
    }
    EXPECT_TRUE(m.in_shadow(0.5 * (s[k].entry_s + s[k].exit_s)));
    EXPECT_TRUE(m.in_shadow(s[k].entry_s + 1.0));
    EXPECT_TRUE(m.in_shadow(s[k].exit_s - 1.0));
    EXPECT_FALSE(m.in_shadow(s[k].entry_s - 1.0));
    EXPECT_FALSE(m.in_shadow(s[k].exit_s + 1.0));
    // next_shadow from inside a shadow is that shadow; from just after, the next one.
    EXPECT_NEAR(m.next_shadow(s[k].entry_s + 10.0)->entry_s, s[k].entry_s, 1e-6);
    EXPECT_NEAR(m.next_shadow(s[k].exit_s + 10.0)->entry_s, s[k].entry_s + m.period_s(), 1e-6);
  }
  // Phase 37 deg from noon: the first shadow starts at (180 - 37 - half angle) / 360 of a period.
  const double half_deg = 180.0 * m.eclipse_fraction();
  EXPECT_NEAR(s[0].entry_s, (180.0 - 37.0 - half_deg) / 360.0 * m.period_s(), 1e-6);
}

// Independent check: satellite and sun as 3-D vectors, cylindrical shadow test.
TEST(Eclipse, AgreesWithAVectorShadowTest) {
  for (double beta : {0.0, 35.0, 60.0, -50.0}) {
    const EclipseModel m = model(550.0, beta, 100.0);
    const double a = kEarthRadiusKm + 550.0;
    const double b = beta * kDeg;
    const double sun[3] = {std::cos(b), 0.0, std::sin(b)};
    int shadow_samples = 0;
    for (double t = 0.0; t < 2.0 * m.period_s(); t += 7.0) {
      const double theta = 100.0 * kDeg + 2.0 * kPi * t / m.period_s();
      const double r[3] = {a * std::cos(theta), a * std::sin(theta), 0.0};
      const double along = r[0] * sun[0] + r[1] * sun[1] + r[2] * sun[2];
      const double perp2 = a * a - along * along;
      const bool shadow = along < 0.0 && perp2 < kEarthRadiusKm * kEarthRadiusKm;
      // Skip samples within 1 s of a boundary.
      const auto s = m.next_shadow(t);
      if (s && (std::abs(t - s->entry_s) < 1.0 || std::abs(t - s->exit_s) < 1.0)) continue;
      ASSERT_EQ(m.in_shadow(t), shadow) << "beta " << beta << " t " << t;
      shadow_samples += shadow;
    }
    // Share of shadow samples ~ the predicted fraction.
    EXPECT_NEAR(shadow_samples * 7.0 / (2.0 * m.period_s()), m.eclipse_fraction(), 0.01) << "beta " << beta;
  }
}

TEST(Eclipse, NextCheckpointTimeIsBeforeEntry) {
  const EclipseModel m = model(550.0, 0.0, 0.0);  // starts at orbit noon
  const ShadowInterval s = *m.next_shadow(0.0);
  EXPECT_NEAR(*m.next_checkpoint_time(0.0, 120.0), s.entry_s - 120.0, 1e-9);
  EXPECT_EQ(*m.next_checkpoint_time(s.entry_s - 60.0, 120.0), s.entry_s - 60.0);  // inside the margin: now
  EXPECT_EQ(*m.next_checkpoint_time(s.entry_s + 60.0, 120.0), s.entry_s + 60.0);  // in shadow: now
  EXPECT_NEAR(*m.next_checkpoint_time(s.exit_s + 1.0, 120.0), s.entry_s + m.period_s() - 120.0, 1e-6);
}

// A step boundary is the shadow's checkpoint when it is within the margin of the entry, or when the
// next boundary, one step later, would be: a step longer than the margin would otherwise carry the
// checkpoint past the entry.
TEST(Eclipse, CheckpointDueLooksOneStepAhead) {
  const EclipseModel m = model(550.0, 0.0, 0.0);
  const ShadowInterval s = *m.next_shadow(0.0);
  EXPECT_FALSE(m.checkpoint_due(s.entry_s - 61.0, 60.0, 0.0));
  EXPECT_TRUE(m.checkpoint_due(s.entry_s - 60.0, 60.0, 0.0));
  EXPECT_TRUE(m.checkpoint_due(s.entry_s + 10.0, 60.0, 0.0));  // in shadow (late, but still taken)
  // Steps of 100 s: at entry - 150 the next boundary (entry - 50) is already inside the margin.
  EXPECT_TRUE(m.checkpoint_due(s.entry_s - 150.0, 60.0, 100.0));
  EXPECT_FALSE(m.checkpoint_due(s.entry_s - 170.0, 60.0, 100.0));
  // Boundaries every 100 s from 0 with a 60 s margin: the first one due is the last before entry - 60.
  double first_due = -1.0;
  for (double t = 0.0; t < s.entry_s && first_due < 0.0; t += 100.0)
    if (m.checkpoint_due(t, 60.0, 100.0)) first_due = t;
  EXPECT_GT(first_due, s.entry_s - 160.0);
  EXPECT_LE(first_due, s.entry_s - 60.0);
  EXPECT_FALSE(m.checkpoint_due(0.0, 60.0, -5.0));  // a negative step counts as none
  const EclipseModel none = model(550.0, 80.0, 0.0);
  EXPECT_FALSE(none.checkpoint_due(0.0, 60.0, 1e9));
}

TEST(Eclipse, BetaFromElementsAndDate) {
  // March equinox 2024-03-20 03:06 UTC: the sun is at the vernal point.
  const double equinox = 1710903960.0;
  const auto sun = sun_direction_eci(equinox);
  EXPECT_NEAR(sun[0], 1.0, 1e-4);
  EXPECT_NEAR(std::atan2(sun[1], sun[0]) / kDeg, 0.0, 0.05);
  // June solstice 2024-06-20 20:51 UTC: an equatorial orbit has beta = obliquity.
  EXPECT_NEAR(beta_angle_deg(0.0, 0.0, 1718916660.0), 23.44, 0.05);
  // December solstice: -obliquity.
  EXPECT_NEAR(beta_angle_deg(0.0, 0.0, 1734772860.0), -23.44, 0.05);
  // Dawn-dusk sun-synchronous orbit (i = 97.6, node 90 deg from the sun): |beta| ~ 82 deg, no shadow.
  EclipseModel sso;
  PERIGEE_CHECK_OR_DIE(EclipseModel::from_elements(550.0, 97.6, 90.0, 0.0, equinox, &sso));
  EXPECT_NEAR(std::abs(sso.beta_deg()), 82.4, 0.1);
  EXPECT_FALSE(sso.has_eclipse());
  // Equatorial orbit at the equinox, satellite opposite the sun: in the middle of the shadow.
  EclipseModel eq;
  PERIGEE_CHECK_OR_DIE(EclipseModel::from_elements(550.0, 0.0, 0.0, 180.0, equinox, &eq));
  EXPECT_NEAR(eq.beta_deg(), 0.0, 0.05);
  EXPECT_TRUE(eq.in_shadow(0.0));
  const ShadowInterval s = *eq.next_shadow(0.0);
  EXPECT_NEAR(0.5 * (s.entry_s + s.exit_s), 0.0, 0.01 * eq.period_s());
}

TEST(Eclipse, InvalidArguments) {
  EclipseModel m;
  EXPECT_EQ(EclipseModel::from_beta(-1.0, 0.0, 0.0, &m).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EclipseModel::from_beta(550.0, 91.0, 0.0, &m).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EclipseModel::from_beta(550.0, NAN, 0.0, &m).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EclipseModel::from_elements(550.0, 200.0, 0.0, 0.0, 0.0, &m).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace perigee::checkpoint
