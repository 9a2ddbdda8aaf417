#pragma once
// A minimal complex number for code that runs on both the host and the device (std::complex is
// not usable in device code). It holds (re, im) in that order, so an array of Complex<T> has the
// memory layout of a tensor [..., 2] of T: the engine stores complex tensors that way. The
// alignment lets the GPU move one value with a single 8-byte (float) or 16-byte (double) access.
#include <math.h>

#include "base/dtype.h"

namespace mgl {

template <class T>
struct alignas(2 * sizeof(T)) Complex {
  T re = T(0);
  T im = T(0);

  Complex() = default;
  MGL_HOST_DEVICE Complex(T real, T imag = T(0)) : re(real), im(imag) {}
  template <class U>
  MGL_HOST_DEVICE explicit Complex(const Complex<U>& other) : re(T(other.re)), im(T(other.im)) {}

  MGL_HOST_DEVICE Complex& operator+=(const Complex& b) {
    re += b.re;
    im += b.im;
    return *this;
  }
};

template <class T>
MGL_HOST_DEVICE inline Complex<T> operator+(Complex<T> a, Complex<T> b) {
  return {a.re + b.re, a.im + b.im};
}
template <class T>
MGL_HOST_DEVICE inline Complex<T> operator+(Complex<T> a, T b) {
  return {a.re + b, a.im};
}
template <class T>
MGL_HOST_DEVICE inline Complex<T> operator*(Complex<T> a, Complex<T> b) {
  return {a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re};
}
template <class T>
MGL_HOST_DEVICE inline Complex<T> operator*(Complex<T> a, T s) {
  return {a.re * s, a.im * s};
}
template <class T>
MGL_HOST_DEVICE inline Complex<T> operator*(T s, Complex<T> a) {
  return {a.re * s, a.im * s};
}
template <class T>
MGL_HOST_DEVICE inline Complex<T> conj(Complex<T> a) {
  return {a.re, -a.im};
}
// e^z = e^re (cos im + i sin im).
template <class T>
MGL_HOST_DEVICE inline Complex<T> exp(Complex<T> z) {
  const T magnitude = ::exp(z.re);
  return {magnitude * ::cos(z.im), magnitude * ::sin(z.im)};
}

}  // namespace mgl
