// Names of the all-reduce algorithms as they appear in configs and logs, and their parser.
#include <array>

#include "collectives/algorithms/schedule.hpp"

namespace perigee::collectives::algorithms {
namespace {

constexpr std::array<Algorithm, 7> kAll = {
    Algorithm::kRing,         Algorithm::kRabenseifner,     Algorithm::kTorus2d,
    Algorithm::kHierarchical, Algorithm::kDoubleBinaryTree, Algorithm::kNative,
    Algorithm::kAuto};

}  // namespace

const char* algorithm_name(Algorithm a) {
  switch (a) {
    case Algorithm::kRing:
      return "ring";
    case Algorithm::kRabenseifner:
      return "rabenseifner";
    case Algorithm::kTorus2d:
      return "torus2d";
    case Algorithm::kHierarchical:
      return "hierarchical";
    case Algorithm::kDoubleBinaryTree:
      return "double_binary_tree";
    case Algorithm::kNative:
      return "native";
    case Algorithm::kAuto:
      return "auto";
  }
  return "unknown";
}

Status parse_algorithm(const std::string& name, Algorithm* out) {
  std::string valid;
  for (Algorithm a : kAll) {
    if (name == algorithm_name(a)) {
      *out = a;
      return Status::ok();
    }
    valid += valid.empty() ? "" : ", ";
    valid += algorithm_name(a);
  }
  return make_error(StatusCode::kInvalidArgument, "unknown collective algorithm '", name, "' (valid: ", valid,
                    ")");
}

}  // namespace perigee::collectives::algorithms
