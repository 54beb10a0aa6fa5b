// Reading a JS QBlock object (see addon_qdot.cpp) into a QBlockMatrix; the typed arrays it points
// into are appended to `keep` (the caller holds them for as long as the matrix is used).
#pragma once
#include <napi.h>

#include <vector>

#include "kernels/qdot.h"

namespace lowbit {
void qblock_from_js(Napi::Env env, const Napi::Object& o, QBlockMatrix& w, std::vector<Napi::Value>& keep);
}
