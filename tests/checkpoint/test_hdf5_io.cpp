// HDF5 file format: bit-exact round trip, the view table order, write-side validation, and the
// reader's verification (format, version, required fields, manifest, Fletcher32, CRC32C,
// truncation, foreign files), each error naming the file, the object and the problem.
#include "checkpoint/hdf5_io.hpp"

#include <gtest/gtest.h>
#include <hdf5.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "checkpoint/hdf5_check.hpp"
#include "tests/checkpoint/test_support.hpp"

namespace perigee::checkpoint {
namespace {

using test_support::make_snapshot;
using test_support::ScratchDir;

// --- tampering through the HDF5 API (a file that HDF5 accepts but whose content was altered)

// Opens a checkpoint read-write with the library's file access settings; closes on scope exit.
class Tamper {
 public:
  explicit Tamper(const std::string& file) : lock_(hdf5_mutex()) {
    hdf5_silence_errors();
    Hdf5Id fapl(H5Pcreate(H5P_FILE_ACCESS));
    H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
    H5Pset_file_locking(fapl.get(), false, true);
    file_ = Hdf5Id(H5Fopen(file.c_str(), H5F_ACC_RDWR, fapl.get()));
    EXPECT_TRUE(file_.valid()) << hdf5_error_text();
  }
  ~Tamper() { EXPECT_GE(file_.reset(), 0) << hdf5_error_text(); }
  hid_t file() const { return file_.get(); }

 private:
  std::lock_guard<std::recursive_mutex> lock_;
  Hdf5Id file_;
};

// Replaces an attribute's value, keeping its type and shape (delete + create: HDF5 1.10.8 cannot
// rewrite some attributes of latest-format object headers in place).
template <typename T>
void set_attr(const std::string& file, const std::string& object, const std::string& attr, hid_t mem_type,
              T value) {
  Tamper t(file);
  Hdf5Id a(H5Aopen_by_name(t.file(), object.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT));
  ASSERT_TRUE(a.valid()) << hdf5_error_text();
  Hdf5Id type(H5Aget_type(a.get()));
  Hdf5Id space(H5Aget_space(a.get()));
  ASSERT_GE(a.reset(), 0);
  ASSERT_GE(H5Adelete_by_name(t.file(), object.c_str(), attr.c_str(), H5P_DEFAULT), 0) << hdf5_error_text();
  a = Hdf5Id(H5Acreate_by_name(t.file(), object.c_str(), attr.c_str(), type.get(), space.get(), H5P_DEFAULT,
                               H5P_DEFAULT, H5P_DEFAULT));
  ASSERT_TRUE(a.valid()) << hdf5_error_text();
  ASSERT_GE(H5Awrite(a.get(), mem_type, &value), 0) << hdf5_error_text();
}

void delete_attr(const std::string& file, const std::string& object, const std::string& attr) {
  Tamper t(file);
  ASSERT_GE(H5Adelete_by_name(t.file(), object.c_str(), attr.c_str(), H5P_DEFAULT), 0) << hdf5_error_text();
}

// Rewrites one element of a float dataset through HDF5 (Fletcher32 is recomputed, so only the
// CRC32C can notice).
void rewrite_element(const std::string& file, const std::string& dataset, size_t index, float value) {
  Tamper t(file);
  Hdf5Id d(H5Dopen2(t.file(), dataset.c_str(), H5P_DEFAULT));
  ASSERT_TRUE(d.valid()) << hdf5_error_text();
  Hdf5Id space(H5Dget_space(d.get()));
  std::vector<float> all(static_cast<size_t>(H5Sget_simple_extent_npoints(space.get())));
  ASSERT_GE(H5Dread(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()), 0)
      << hdf5_error_text();
  all.at(index) = value;
  ASSERT_GE(H5Dwrite(d.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, all.data()), 0)
      << hdf5_error_text();
}

void expect_error(const Status& s, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(s.is_ok()) << "expected an error";
  for (const std::string& p : parts)
    EXPECT_NE(s.message().find(p), std::string::npos) << "missing '" << p << "' in: " << s.message();
}

TEST(Hdf5Io, RoundTripIsBitExact) {
  ScratchDir dir("io");
  const Snapshot s = make_snapshot(120, 7);
  const std::string path = dir.file("a.h5");
  WriteStats ws;
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, s, WriteOptions{1024}, &ws));  // several chunks per tensor
  EXPECT_EQ(ws.data_bytes, s.data_bytes());
  Snapshot back;
  CheckpointHeader header;
  PERIGEE_CHECK_OR_DIE(read_snapshot(path, &back, &header));
  std::string why;
  EXPECT_TRUE(bit_equal(s, back, &why)) << why;
  EXPECT_EQ(back.buffers[0].views[0].name, "wpe.weight");  // table order, not name or offset order
  EXPECT_EQ(header.format_version, kFormatVersion);
  EXPECT_EQ(header.buffers.size(), 3u);
  EXPECT_EQ(header.buffers[0].crc32c[0], view_crc32c(s.buffers[0], s.buffers[0].views[0]));

  CheckpointHeader only;
  PERIGEE_CHECK_OR_DIE(read_header(path, &only));
  EXPECT_EQ(only.meta, s.meta);
  EXPECT_EQ(only.manifest_crc32c, header.manifest_crc32c);
}

TEST(Hdf5Io, OddShapesAndChunksCutInEveryDimensionRoundTrip) {
  ScratchDir dir("io");
  Snapshot s = make_snapshot(9, 4);
  // A buffer whose views need gathers (chunks cut below the leading dimension) and edge chunks.
  Buffer odd;
  odd.name = "odd";
  uint64_t offset = 0;
  for (std::vector<int64_t> shape :
       {std::vector<int64_t>{5, 7, 3}, {11}, {13, 17}, {1, 1, 29}, {2, 3, 5, 7}}) {
    View v{"t" + std::to_string(odd.views.size()), offset, shape};
    offset += v.size();
    odd.views.push_back(v);
  }
  for (uint64_t i = 0; i < offset; ++i) odd.data.push_back(static_cast<float>(i) * 0.5f - 3.0f);
  s.buffers.push_back(odd);
  for (uint64_t chunk : {4ull, 12ull, 40ull, 100ull, 1ull << 20}) {
    SCOPED_TRACE(chunk);
    const std::string path = dir.file("odd.h5");
    PERIGEE_CHECK_OR_DIE(write_snapshot(path, s, WriteOptions{chunk}));
    Snapshot back;
    const Status st = read_snapshot(path, &back);  // HDF5 checks every chunk's Fletcher32
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    std::string why;
    EXPECT_TRUE(bit_equal(s, back, &why)) << why;
  }
}

TEST(Hdf5Io, ManifestCoversMetadataAndTensorCrcs) {
  const Snapshot s = make_snapshot(3, 1);
  std::vector<BufferInfo> infos;
  for (const Buffer& b : s.buffers) {
    BufferInfo i{b.name, b.data.size(), b.views, {}};
    for (const View& v : b.views) i.crc32c.push_back(view_crc32c(b, v));
    infos.push_back(i);
  }
  const uint32_t ref = manifest_crc32c(kFormatVersion, s.meta, infos);
  SnapshotMeta m = s.meta;
  m.rng_states["init"][0] ^= 1;
  EXPECT_NE(manifest_crc32c(kFormatVersion, m, infos), ref);
  m = s.meta;
  m.config_json += " ";
  EXPECT_NE(manifest_crc32c(kFormatVersion, m, infos), ref);
  m = s.meta;
  m.series["losses"][1] = std::nextafter(m.series["losses"][1], 0.0);  // one ulp of a float64
  EXPECT_NE(manifest_crc32c(kFormatVersion, m, infos), ref);
  m = s.meta;
  m.series["extra"] = {0.0};
  EXPECT_NE(manifest_crc32c(kFormatVersion, m, infos), ref);
  std::vector<BufferInfo> other = infos;
  other[2].crc32c[3] ^= 0x100;
  EXPECT_NE(manifest_crc32c(kFormatVersion, s.meta, other), ref);
  other = infos;
  other[1].views[2].shape = {other[1].views[2].shape[1], other[1].views[2].shape[0]};  // transposed
  EXPECT_NE(manifest_crc32c(kFormatVersion, s.meta, other), ref);
  EXPECT_NE(manifest_crc32c(kFormatVersion + 1, s.meta, infos), ref);
}

TEST(Hdf5Io, WriteRejectsBadSnapshots) {
  ScratchDir dir("io");
  const std::string path = dir.file("bad.h5");
  Snapshot s = make_snapshot(1, 1);
  s.buffers[0].views[3].offset += 1;  // gap + overlap
  expect_error(write_snapshot(path, s), {"bad.h5", "params", "gap"});
  s = make_snapshot(1, 1);
  s.buffers[1].views[2].name = "a/b";
  expect_error(write_snapshot(path, s), {"a/b", "'/'"});
  s = make_snapshot(1, 1);
  s.buffers[2].name = "adam_m";
  expect_error(write_snapshot(path, s), {"two buffers are named 'adam_m'"});
  s = make_snapshot(1, 1);
  s.meta.data_cursors.pop_back();
  expect_error(write_snapshot(path, s), {"data_cursors has 1 rows but world_size is 2"});
  s = make_snapshot(1, 1);
  s.buffers[0].data.push_back(1.0f);
  expect_error(write_snapshot(path, s), {"views cover", "buffer holds"});
  s = make_snapshot(1, 1);
  s.meta.series["losses"].clear();
  expect_error(write_snapshot(path, s), {"series 'losses' is empty"});
  s = make_snapshot(1, 1);
  s.meta.lr_schedule.last_lr = std::nan("");
  expect_error(write_snapshot(path, s), {"lr_schedule holds a value that is not finite"});
  EXPECT_FALSE(std::filesystem::exists(path));
}

// View tables whose element counts would wrap 64 bits: [2^32, 2^32] has 2^64 elements (0 when
// multiplied out), and a view that ends past a buffer near 2^64 elements.
TEST(Hdf5Io, ViewTablesThatWouldWrapAreRejected) {
  const int64_t big = int64_t{1} << 32;
  Status s = validate_buffer_layout("params", {View{"w", 0, {4}}, View{"huge", 4, {big, big}}}, 4);
  EXPECT_NE(s.message().find("view 'params/huge' has more elements than the buffer holds (4)"),
            std::string::npos)
      << s.message();
  const uint64_t size = ~uint64_t{0} - 1;
  s = validate_buffer_layout(
      "params", {View{"a", 0, {big, big / 2}}, View{"b", uint64_t{1} << 63, {big, big / 2}}}, size);
  EXPECT_NE(s.message().find("view 'b' at element 9223372036854775808 ends past the buffer's"),
            std::string::npos)
      << s.message();
}

// A buffer size past the file (2^62 floats in a few MB), even with the manifest recomputed to match:
// refused before its bytes are multiplied out or allocated.
TEST(Hdf5Io, ABufferLargerThanTheFileIsCorruptEvenWithAMatchingManifest) {
  ScratchDir dir("io");
  const std::string path = dir.file("m.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  CheckpointHeader h;
  PERIGEE_CHECK_OR_DIE(read_header(path, &h));
  h.buffers[0].size = uint64_t{1} << 62;
  set_attr<uint64_t>(path, "/buffers/" + h.buffers[0].name, "size", H5T_NATIVE_UINT64, h.buffers[0].size);
  set_attr<uint32_t>(path, "/", "manifest_crc32c", H5T_NATIVE_UINT32,
                     manifest_crc32c(kFormatVersion, h.meta, h.buffers));
  expect_error(read_header(path, &h), {"m.h5", "the buffers claim more than the file's"});
  Snapshot out;
  expect_error(read_snapshot(path, &out), {"the buffers claim more than the file's"});
}

// A dataset whose shape claims more bytes than the file holds (a chunked dataset never written takes
// no room, so a few KB can claim any shape) is corrupt, named, and never allocated: here the data
// cursors, read before the manifest is checked, at 2^41 rows and at a shape whose product wraps to 0.
TEST(Hdf5Io, ADatasetClaimingMoreThanTheFileIsCorrupt) {
  ScratchDir dir("io");
  const std::string path = dir.file("c.h5");
  const hsize_t shapes[][2] = {{hsize_t{1} << 41, 2}, {hsize_t{1} << 32, hsize_t{1} << 32}};
  for (const auto& shape : shapes) {
    PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
    {
      Tamper t(path);
      ASSERT_GE(H5Ldelete(t.file(), "/meta/data_cursors", H5P_DEFAULT), 0) << hdf5_error_text();
      const hsize_t chunk[2] = {1024, 1};
      Hdf5Id space(H5Screate_simple(2, shape, nullptr));
      ASSERT_TRUE(space.valid()) << hdf5_error_text();
      Hdf5Id dcpl(H5Pcreate(H5P_DATASET_CREATE));
      ASSERT_GE(H5Pset_chunk(dcpl.get(), 2, chunk), 0);
      ASSERT_GE(H5Pset_fletcher32(dcpl.get()), 0);
      Hdf5Id d(H5Dcreate2(t.file(), "/meta/data_cursors", H5T_STD_U64LE, space.get(), H5P_DEFAULT, dcpl.get(),
                          H5P_DEFAULT));
      ASSERT_TRUE(d.valid()) << hdf5_error_text();
    }
    ASSERT_LT(std::filesystem::file_size(path), uint64_t{1} << 20);
    CheckpointHeader h;
    const Status s = read_header(path, &h);
    EXPECT_EQ(s.code(), StatusCode::kIoError);
    expect_error(s, {"c.h5", "/meta/data_cursors", "the dataset claims", "more than the file's"});
  }
}

TEST(Hdf5Io, MissingEmptyAndForeignFiles) {
  ScratchDir dir("io");
  Snapshot out;
  Status s = read_snapshot(dir.file("nope.h5"), &out);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  expect_error(s, {"nope.h5", "not found"});

  test_support::write_bytes(dir.file("empty.h5"), "");
  expect_error(read_snapshot(dir.file("empty.h5"), &out), {"empty.h5", "empty"});

  test_support::write_bytes(dir.file("text.h5"), std::string(4096, 'x'));
  s = read_snapshot(dir.file("text.h5"), &out);
  EXPECT_EQ(s.code(), StatusCode::kHdf5Error);
  expect_error(s, {"text.h5", "cannot open as HDF5"});

  {  // a valid HDF5 file that is not a checkpoint
    std::lock_guard<std::recursive_mutex> lock(hdf5_mutex());
    const hid_t f = H5Fcreate(dir.file("other.h5").c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ASSERT_GE(f, 0);
    H5Fclose(f);
  }
  expect_error(read_snapshot(dir.file("other.h5"), &out),
               {"other.h5", "required attribute 'format' is missing"});
}

TEST(Hdf5Io, ErrorsAreNotPrintedByHdf5) {
  ScratchDir dir("io");
  test_support::write_bytes(dir.file("text.h5"), std::string(4096, 'x'));
  ::testing::internal::CaptureStderr();
  Snapshot out;
  const Status s = read_snapshot(dir.file("text.h5"), &out);
  const std::string printed = ::testing::internal::GetCapturedStderr();
  EXPECT_FALSE(s.is_ok());
  EXPECT_EQ(printed, "") << "HDF5 printed its error stack";
  // The stack is in the Status instead.
  EXPECT_NE(s.message().find("H5Fopen"), std::string::npos) << s.message();
}

TEST(Hdf5Io, NewerFormatVersionIsRefused) {
  ScratchDir dir("io");
  const std::string path = dir.file("v.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  set_attr<int32_t>(path, "/", "format_version", H5T_NATIVE_INT32, kFormatVersion + 1);
  Snapshot out;
  // Another build's file, not a damaged one: kInvalidArgument, which a resume refuses rather than passes
  // over (its next commit would delete a newer file it passed over).
  const Status newer = read_snapshot(path, &out);
  expect_error(newer,
               {"v.h5", "format version 3 is not supported", "reads 1 to 2", "a newer Perigee wrote it"});
  EXPECT_EQ(newer.code(), StatusCode::kInvalidArgument);
  set_attr<int32_t>(path, "/", "format_version", H5T_NATIVE_INT32, 0);
  const Status older = read_snapshot(path, &out);
  expect_error(older, {"v.h5", "format version 0 is not supported"});
  EXPECT_EQ(older.code(), StatusCode::kInvalidArgument);
}

// A version 1 file, written by the build before the series existed (make_snapshot(5, 2, 1, 8, 2)
// without them), still reads, bit-exact, as a snapshot with no series.
TEST(Hdf5Io, FormatVersion1FileStillReads) {
  const char* env = std::getenv("PERIGEE_SOURCE_DIR");
  const std::string path =
      std::string(env != nullptr ? env : PERIGEE_SOURCE_DIR) + "/tests/checkpoint/data/format_v1.h5";
  Snapshot expected = make_snapshot(5, 2, 1, 8, 2);
  expected.meta.series.clear();
  Snapshot back;
  CheckpointHeader header;
  const Status s = read_snapshot(path, &back, &header);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  EXPECT_EQ(header.format_version, 1);
  std::string why;
  EXPECT_TRUE(bit_equal(expected, back, &why)) << why;
  // A version 1 manifest does not cover series; a version 2 one does.
  SnapshotMeta with_series = back.meta;
  with_series.series["losses"] = {1.0};
  EXPECT_EQ(manifest_crc32c(1, with_series, header.buffers), manifest_crc32c(1, back.meta, header.buffers));
  EXPECT_NE(manifest_crc32c(2, with_series, header.buffers), manifest_crc32c(2, back.meta, header.buffers));
}

TEST(Hdf5Io, NoSeriesRoundTripsAsAnEmptyGroup) {
  ScratchDir dir("io");
  const std::string path = dir.file("e.h5");
  Snapshot s = make_snapshot(0, 3);
  s.meta.series.clear();  // e.g. a checkpoint before the first accepted step
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, s));
  Snapshot back;
  CheckpointHeader header;
  const Status st = read_snapshot(path, &back, &header);
  ASSERT_TRUE(st.is_ok()) << st.to_string();
  EXPECT_EQ(header.format_version, kFormatVersion);
  std::string why;
  EXPECT_TRUE(bit_equal(s, back, &why)) << why;
}

TEST(Hdf5Io, Version2FileWithoutSeriesGroupIsRefusedByName) {
  ScratchDir dir("io");
  const std::string path = dir.file("s.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  {
    Tamper t(path);
    ASSERT_GE(H5Ldelete(t.file(), "/meta/series", H5P_DEFAULT), 0) << hdf5_error_text();
  }
  Snapshot out;
  expect_error(read_snapshot(path, &out), {"s.h5", "/meta", "series"});
}

TEST(Hdf5Io, MissingRequiredFieldIsNamed) {
  ScratchDir dir("io");
  const std::string path = dir.file("f.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  delete_attr(path, "/meta/lr_schedule", "last_lr");
  Snapshot out;
  expect_error(read_snapshot(path, &out),
               {"f.h5", "/meta/lr_schedule", "required attribute 'last_lr' is missing"});

  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  delete_attr(path, "/buffers/adam_v/h.1.mlp.c_fc.weight", "crc32c");
  expect_error(read_snapshot(path, &out),
               {"/buffers/adam_v/h.1.mlp.c_fc.weight", "required attribute 'crc32c' is missing"});
}

TEST(Hdf5Io, AlteredMetadataFailsTheManifest) {
  ScratchDir dir("io");
  const std::string path = dir.file("m.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  set_attr<int64_t>(path, "/", "step", H5T_NATIVE_INT64, 6);
  CheckpointHeader h;
  expect_error(read_header(path, &h), {"m.h5", "manifest CRC32C mismatch"});

  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  set_attr<uint64_t>(path, "/meta/rng_states", "init", H5T_NATIVE_UINT64, 3);
  expect_error(read_header(path, &h), {"manifest CRC32C mismatch"});

  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  set_attr<uint32_t>(path, "/buffers/params/wte.weight", "crc32c", H5T_NATIVE_UINT32, 12345);
  expect_error(read_header(path, &h), {"manifest CRC32C mismatch"});

  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  set_attr<double>(path, "/meta/series", "norms", H5T_NATIVE_DOUBLE, 1.5);
  expect_error(read_header(path, &h), {"manifest CRC32C mismatch"});
}

TEST(Hdf5Io, AlteredTensorFailsItsCrc) {
  ScratchDir dir("io");
  const std::string path = dir.file("t.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  rewrite_element(path, "/buffers/adam_m/h.0.attn.c_attn.bias", 3, 0.25f);
  Snapshot out;
  CheckpointHeader h;
  PERIGEE_CHECK_OR_DIE(read_header(path, &h));  // the header alone cannot see it
  expect_error(read_snapshot(path, &out),
               {"t.h5", "/buffers/adam_m/h.0.attn.c_attn.bias", "CRC32C mismatch"});
}

TEST(Hdf5Io, FlippedDataByteFailsFletcher32) {
  ScratchDir dir("io");
  const std::string path = dir.file("d.h5");
  const Snapshot s = make_snapshot(5, 2);
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, s));
  const Buffer& m = s.buffers[1];
  const View& v = m.views[5];  // some tensor of adam_m
  const size_t at = test_support::find_floats(path, m.data.data() + v.offset, 8);
  ASSERT_NE(at, std::string::npos);
  test_support::flip_byte(path, at + 5, 0x01);
  Snapshot out;
  const Status st = read_snapshot(path, &out);
  EXPECT_EQ(st.code(), StatusCode::kHdf5Error);
  expect_error(st, {"d.h5", "/buffers/adam_m/" + v.name, "Fletcher32"});
}

TEST(Hdf5Io, FlippedMetadataByteIsDetected) {
  ScratchDir dir("io");
  const std::string path = dir.file("h.h5");
  // Bytes of attribute names and values live in checksummed object headers.
  for (const std::string needle : {"format_version", "manifest_crc32c", "warmup_cosine", "n_embd"}) {
    SCOPED_TRACE(needle);
    PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
    const size_t at = test_support::find_in_file(path, needle);
    ASSERT_NE(at, std::string::npos);
    test_support::flip_byte(path, at + 2);
    Snapshot out;
    const Status st = read_snapshot(path, &out);
    expect_error(st, {"h.h5"});
  }
}

TEST(Hdf5Io, TruncatedFilesAreDetected) {
  ScratchDir dir("io");
  const std::string path = dir.file("cut.h5");
  PERIGEE_CHECK_OR_DIE(write_snapshot(path, make_snapshot(5, 2)));
  const std::string full = test_support::read_bytes(path);
  for (double keep : {0.999, 0.9, 0.5, 0.1, 0.001}) {
    SCOPED_TRACE(keep);
    test_support::write_bytes(path, full.substr(0, static_cast<size_t>(full.size() * keep)));
    Snapshot out;
    const Status st = read_snapshot(path, &out);
    expect_error(st, {"cut.h5"});
  }
  test_support::write_bytes(path, full.substr(0, full.size() - 1));
  Snapshot out;
  expect_error(read_snapshot(path, &out), {"cut.h5", "truncated"});
}

}  // namespace
}  // namespace perigee::checkpoint
