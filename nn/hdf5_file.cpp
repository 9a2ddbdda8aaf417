#include "nn/hdf5_file.h"

#include <hdf5.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "base/error.h"
#include "core/atomic_file.h"
#include "core/fnv1a.h"

namespace mgl::nn {

namespace {

// HDF5 prints a stack of errors to stderr by default; we report our own messages instead.
void silence_hdf5() {
  static const bool done = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// Closes an HDF5 handle at scope exit.
class Handle {
 public:
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() {
    if (id_ >= 0) close_(id_);
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

hid_t native_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
    case DType::bf16: return H5T_NATIVE_FLOAT;
    case DType::f64: return H5T_NATIVE_DOUBLE;
    case DType::i32: return H5T_NATIVE_INT32;
    case DType::i64: return H5T_NATIVE_INT64;
  }
  return H5T_NATIVE_FLOAT;
}

DType dtype_of_dataset(hid_t type, const std::string& where) {
  const H5T_class_t cls = H5Tget_class(type);
  const size_t size = H5Tget_size(type);
  if (cls == H5T_FLOAT && size == 4) return DType::f32;
  if (cls == H5T_FLOAT && size == 8) return DType::f64;
  if (cls == H5T_INTEGER && size == 4) return DType::i32;
  if (cls == H5T_INTEGER && size == 8) return DType::i64;
  MGL_FAIL(where, ": unsupported HDF5 element type (class ", static_cast<int>(cls), ", ", size,
           " bytes); expected float32/64 or int32/64");
}

constexpr const char* kDatasetChecksum = "fnv1a64";

// The hash a dataset carries: its name, its dimensions and its bytes.
uint64_t dataset_checksum(const std::string& name, const std::vector<hsize_t>& dims, const void* data, size_t bytes) {
  uint64_t hash = fnv1a64(name.data(), name.size());
  for (const hsize_t d : dims) {
    const uint64_t extent = d;
    hash = fnv1a64(&extent, sizeof extent, hash);
  }
  return fnv1a64(data, bytes, hash);
}

// The OS reason of a failed HDF5 call, when the OS gave one (errno is cleared before the call): "No
// space left on device" or "Read-only file system" say what "writing failed" does not (issue 15 item 4).
std::string os_reason() { return errno != 0 ? std::string(": ") + std::strerror(errno) : std::string(); }

// Attributes of the file's root group, or of a dataset (`object`).
void write_attribute(hid_t object, const std::string& path, const std::string& name, hid_t type, const void* value) {
  if (H5Aexists(object, name.c_str()) > 0) H5Adelete(object, name.c_str());
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attribute(H5Acreate2(object, name.c_str(), type, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  MGL_CHECK(attribute.get() >= 0 && H5Awrite(attribute.get(), type, value) >= 0, path, ": cannot write attribute '",
            name, "'");
}

hid_t open_attribute(hid_t object, const std::string& path, const std::string& name) {
  MGL_CHECK(H5Aexists(object, name.c_str()) > 0, path, ": no attribute '", name, "'");
  const hid_t attribute = H5Aopen(object, name.c_str(), H5P_DEFAULT);
  MGL_CHECK(attribute >= 0, path, ": cannot open attribute '", name, "'");
  return attribute;
}

void write_checksum(hid_t dataset, const std::string& path, uint64_t checksum) {
  write_attribute(dataset, path, kDatasetChecksum, H5T_NATIVE_UINT64, &checksum);
}

void verify_checksum(hid_t dataset, const std::string& path, const std::string& name, uint64_t computed) {
  if (H5Aexists(dataset, kDatasetChecksum) <= 0) return;  // a file written before checksums, or by another tool
  Handle attribute(open_attribute(dataset, path, kDatasetChecksum), H5Aclose);
  uint64_t stored = 0;
  MGL_CHECK(H5Aread(attribute.get(), H5T_NATIVE_UINT64, &stored) >= 0, path, ": cannot read the checksum of dataset '",
            name, "'");
  MGL_CHECK(stored == computed, path, ": dataset '", name, "' fails its checksum (the file is damaged: its bytes ",
            "changed after it was written)");
}

}  // namespace

Hdf5File::Hdf5File(const std::string& path, Mode mode) : path_(path) {
  silence_hdf5();
  if (mode == Mode::read) {
    MGL_CHECK(std::filesystem::exists(path), "cannot open '", path, "': no such file");
    MGL_CHECK(!std::filesystem::is_directory(path), "cannot open '", path, "': Is a directory");
    std::FILE* probe = std::fopen(path.c_str(), "rb");  // unreadable ("Permission denied") is not "corrupted"
    MGL_CHECK(probe != nullptr, "cannot open '", path, "': ", std::strerror(errno));
    std::fclose(probe);
    file_ = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    MGL_CHECK(file_ >= 0, "cannot open '", path, "' as HDF5 (not an HDF5 file, or truncated/corrupted)");
    if (sealed()) {
      const uint64_t stored = static_cast<uint64_t>(int_attribute(kAttributesChecksum));
      MGL_CHECK(stored == attributes_checksum(), path, ": the root attributes fail their checksum (an attribute was ",
                "changed or damaged after the file was written)");
    }
  } else {
    errno = 0;
    file_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    MGL_CHECK(file_ >= 0, "cannot create HDF5 file '", path, "'", os_reason());
  }
}

Hdf5File::~Hdf5File() {
  if (file_ >= 0) H5Fclose(file_);
}

void Hdf5File::close() {
  errno = 0;
  const herr_t status = H5Fclose(file_);
  file_ = -1;
  MGL_CHECK(status >= 0, path_, ": writing the file failed", os_reason());
}

void Hdf5File::write(const std::string& name, const Tensor& tensor) {
  // Row-major host copy in the stored type.
  const DType stored = tensor.dtype() == DType::bf16 ? DType::f32 : tensor.dtype();
  Tensor host = Tensor::empty(tensor.shape(), stored, Device::cpu());
  copy_(host, tensor);
  std::vector<hsize_t> dims(tensor.shape().begin(), tensor.shape().end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle links(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(links.get(), 1);
  Handle dataset(H5Dcreate2(file_, name.c_str(), native_type(stored), space.get(), links.get(), H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose);
  MGL_CHECK(dataset.get() >= 0, path_, ": cannot create dataset '", name, "' (does it exist already?)");
  errno = 0;
  MGL_CHECK(H5Dwrite(dataset.get(), native_type(stored), H5S_ALL, H5S_ALL, H5P_DEFAULT, host.raw_data()) >= 0, path_,
            ": writing dataset '", name, "' failed", os_reason());
  write_checksum(dataset.get(), path_,
                 dataset_checksum(name, dims, host.raw_data(), host.numel() * host.element_size()));
}

bool Hdf5File::contains(const std::string& name) const {
  // H5Lexists must be asked about each path component in turn.
  size_t start = 0;
  while (true) {
    const size_t slash = name.find('/', start);
    const std::string prefix = name.substr(0, slash);
    if (prefix.empty() || H5Lexists(file_, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  H5O_info_t info;  // the HDF5 1.10 API (Debian 12 and Ubuntu 24.04 ship 1.10)
  return H5Oget_info_by_name2(file_, name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) >= 0 &&
         info.type == H5O_TYPE_DATASET;
}

Tensor Hdf5File::read(const std::string& name) const {
  MGL_CHECK(contains(name), path_, ": no dataset '", name, "'");
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  MGL_CHECK(dataset.get() >= 0, path_, ": cannot open dataset '", name, "'");
  Handle type(H5Dget_type(dataset.get()), H5Tclose);
  const DType dtype = dtype_of_dataset(type.get(), path_ + ":" + name);
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  MGL_CHECK(rank >= 0, path_, ": dataset '", name, "' has no simple shape");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  // A corrupted header can declare any shape: before allocating, the declared bytes must be what the file
  // stores for the dataset. That holds for contiguous datasets (ours, h5py's default); a chunked one (maybe
  // compressed) stores fewer bytes than it holds, so it is only checked for an overflowing size.
  Handle create_list(H5Dget_create_plist(dataset.get()), H5Pclose);
  const bool contiguous = create_list.get() >= 0 && H5Pget_layout(create_list.get()) == H5D_CONTIGUOUS;
  uint64_t declared = dtype_size(dtype);
  bool overflow = false;
  for (const hsize_t d : dims) {
    overflow = overflow || (d != 0 && declared > std::numeric_limits<int64_t>::max() / d);
    declared = overflow ? declared : declared * d;
  }
  const hsize_t stored = H5Dget_storage_size(dataset.get());
  MGL_CHECK(!overflow && (!contiguous || declared <= stored), path_, ": dataset '", name, "' declares more bytes (",
            overflow ? std::string("over 2^63") : std::to_string(declared), ") than the file stores for it (",
            stored, "): truncated or corrupted");
  Tensor out = Tensor::empty(Shape(dims.begin(), dims.end()), dtype, Device::cpu());
  MGL_CHECK(H5Dread(dataset.get(), native_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.raw_data()) >= 0, path_,
            ": reading dataset '", name, "' failed (file truncated or corrupted?)");
  verify_checksum(dataset.get(), path_, name,
                  dataset_checksum(name, dims, out.raw_data(), out.numel() * out.element_size()));
  return out;
}

void Hdf5File::write_bytes(const std::string& name, const std::string& bytes) {
  const hsize_t size = bytes.size();
  Handle space(H5Screate_simple(1, &size, nullptr), H5Sclose);
  Handle links(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(links.get(), 1);
  Handle dataset(H5Dcreate2(file_, name.c_str(), H5T_NATIVE_UINT8, space.get(), links.get(), H5P_DEFAULT, H5P_DEFAULT),
                 H5Dclose);
  MGL_CHECK(dataset.get() >= 0, path_, ": cannot create dataset '", name, "' (does it exist already?)");
  errno = 0;
  MGL_CHECK(H5Dwrite(dataset.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) >= 0, path_,
            ": writing dataset '", name, "' failed", os_reason());
  write_checksum(dataset.get(), path_, dataset_checksum(name, {size}, bytes.data(), bytes.size()));
}

std::string Hdf5File::read_bytes(const std::string& name) const {
  MGL_CHECK(contains(name), path_, ": no dataset '", name, "'");
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  MGL_CHECK(dataset.get() >= 0, path_, ": cannot open dataset '", name, "'");
  Handle type(H5Dget_type(dataset.get()), H5Tclose);
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  MGL_CHECK(H5Tget_class(type.get()) == H5T_INTEGER && H5Tget_size(type.get()) == 1 &&
                H5Sget_simple_extent_ndims(space.get()) == 1,
            path_, ": dataset '", name, "' is not a 1-D array of bytes");
  hsize_t size = 0;
  H5Sget_simple_extent_dims(space.get(), &size, nullptr);
  std::string bytes(size, '\0');
  MGL_CHECK(size == 0 || H5Dread(dataset.get(), H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) >= 0,
            path_, ": reading dataset '", name, "' failed (file truncated or corrupted?)");
  verify_checksum(dataset.get(), path_, name, dataset_checksum(name, {size}, bytes.data(), bytes.size()));
  return bytes;
}

std::vector<std::string> Hdf5File::dataset_names() const {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5O_info_t* info, void* data) -> herr_t {
    if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  MGL_CHECK(H5Ovisit2(file_, H5_INDEX_NAME, H5_ITER_INC, visit, &names, H5O_INFO_BASIC) >= 0, path_,
            ": cannot list datasets");
  return names;
}

void Hdf5File::set_attribute(const std::string& name, const std::string& value) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), value.size() + 1);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  write_attribute(file_, path_, name, type.get(), value.c_str());
}
void Hdf5File::set_attribute(const std::string& name, int64_t value) {
  write_attribute(file_, path_, name, H5T_NATIVE_INT64, &value);
}
void Hdf5File::set_attribute(const std::string& name, double value) {
  write_attribute(file_, path_, name, H5T_NATIVE_DOUBLE, &value);
}

bool Hdf5File::has_attribute(const std::string& name) const { return H5Aexists(file_, name.c_str()) > 0; }

std::string Hdf5File::string_attribute(const std::string& name) const {
  Handle attribute(open_attribute(file_, path_, name), H5Aclose);
  Handle type(H5Aget_type(attribute.get()), H5Tclose);
  MGL_CHECK(H5Tget_class(type.get()) == H5T_STRING && !H5Tis_variable_str(type.get()), path_, ": attribute '", name,
            "' is not a fixed-length string");
  std::string value(H5Tget_size(type.get()), '\0');
  MGL_CHECK(H5Aread(attribute.get(), type.get(), value.data()) >= 0, path_, ": cannot read attribute '", name, "'");
  value.resize(value.find('\0') == std::string::npos ? value.size() : value.find('\0'));
  return value;
}

int64_t Hdf5File::int_attribute(const std::string& name) const {
  Handle attribute(open_attribute(file_, path_, name), H5Aclose);
  int64_t value = 0;
  MGL_CHECK(H5Aread(attribute.get(), H5T_NATIVE_INT64, &value) >= 0, path_, ": attribute '", name, "' is not an integer");
  return value;
}

double Hdf5File::double_attribute(const std::string& name) const {
  Handle attribute(open_attribute(file_, path_, name), H5Aclose);
  double value = 0;
  MGL_CHECK(H5Aread(attribute.get(), H5T_NATIVE_DOUBLE, &value) >= 0, path_, ": attribute '", name, "' is not a number");
  return value;
}

bool Hdf5File::has_checksum(const std::string& name) const {
  MGL_CHECK(contains(name), path_, ": no dataset '", name, "'");
  Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
  return dataset.get() >= 0 && H5Aexists(dataset.get(), kDatasetChecksum) > 0;
}

namespace {

// Every root attribute's name, in name order.
std::vector<std::string> root_attribute_names(hid_t file) {
  std::vector<std::string> names;
  auto visit = [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
    static_cast<std::vector<std::string>*>(data)->push_back(name);
    return 0;
  };
  H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_INC, nullptr, visit, &names);
  return names;
}

}  // namespace

uint64_t Hdf5File::attributes_checksum() const {
  uint64_t hash = kFnv1aOffsetBasis;
  for (const std::string& name : root_attribute_names(file_)) {
    if (name == kAttributesChecksum) continue;
    Handle attribute(H5Aopen(file_, name.c_str(), H5P_DEFAULT), H5Aclose);
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    Handle memory(H5Tget_native_type(type.get(), H5T_DIR_DEFAULT), H5Tclose);
    Handle space(H5Aget_space(attribute.get()), H5Sclose);
    const hssize_t count = H5Sget_simple_extent_npoints(space.get());
    std::vector<unsigned char> bytes(H5Tget_size(memory.get()) * static_cast<size_t>(std::max<hssize_t>(count, 0)));
    MGL_CHECK(H5Aread(attribute.get(), memory.get(), bytes.data()) >= 0, path_, ": cannot read attribute '", name, "'");
    hash = fnv1a64(name.c_str(), name.size() + 1, hash);
    hash = fnv1a64(bytes.data(), bytes.size(), hash);
  }
  return hash;
}

void Hdf5File::seal_attributes() { set_attribute(kAttributesChecksum, static_cast<int64_t>(attributes_checksum())); }

void write_hdf5_atomically(const std::string& path, const std::function<void(Hdf5File&)>& fill) {
  const std::string temporary = path + ".tmp";
  try {
    {
      Hdf5File file(temporary, Hdf5File::Mode::create);
      fill(file);
      file.seal_attributes();
      file.close();  // flushed, and a failure (a full disk) thrown, before the rename publishes the file
    }
    sync_file_to_disk(temporary);  // on the disk, not only in the page cache, before its name says it is whole
    std::filesystem::rename(temporary, path);
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
}

}  // namespace mgl::nn
