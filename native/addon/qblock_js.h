// Reading a JS QBlock object (see addon_qdot.cpp) into a QBlockMatrix; the typed arrays it points
// into are appended to `keep` (the caller holds them for as long as the matrix is used). The object
// is read as a Job with its own path ("job.w[1]", "weights.layers[3].packed.q"), so a bad field is
// an internal error naming it.
#pragma once
#include <napi.h>

#include <vector>

#include "addon/task.h"
#include "kernels/qdot.h"

namespace lowbit {
void qblock_from_js(const Job& o, QBlockMatrix& w, std::vector<Napi::Value>& keep);
}
