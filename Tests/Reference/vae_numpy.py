#!/usr/bin/env python3
"""An independent reader of `vae export` files: runs the VAE in NumPy float64 and compares it with the engine.

    vae_numpy.py VAE_BINARY MODEL.safetensors DATA.vaeds WORK_DIR [MODEL.npz]

Reads the safetensors file with its own parser (no safetensors package) and the dataset file by
its documented format (docs/dataset.md), builds the PyTorch-layout model of the README ("Export and
import") from the tensors and the configuration in the metadata, and checks:
  - `vae encode` of a few images: mu and logvar within 1e-4 of the NumPy encoder's
    (conv 4x4 stride 2 padding 1 + ReLU per layer, flatten NCHW, the mu and logvar heads);
  - `vae decode` of a few latent vectors (random ones and the encoded mu): images within 1e-4 of
    the NumPy decoder's (dense + ReLU per layer, reshape NCHW, conv-transpose 4x4 stride 2
    padding 1 with ReLU between and a sigmoid at the end);
  - with MODEL.npz: the same tensors, bit for bit, and the same configuration.
Prints the largest differences; exits 1 with a line saying what differs.
"""
import json
import struct
import subprocess
import sys

import numpy as np

TOLERANCE = 1e-4


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_length])
    body = data[8 + header_length:]
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        assert entry["dtype"] == "F32", f"{name}: dtype {entry['dtype']}"
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(body[begin:end], dtype="<f4").reshape(entry["shape"])
    return tensors, metadata


def read_images(path, indices):
    """Images of a .vaeds file as float64 NHWC in [0, 1] (docs/dataset.md, "The file format")."""
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"VAEDATA\0", "not a dataset file"
    size, channels, attributes = struct.unpack("<III", data[12:24])
    count, text_length, record_size = struct.unpack("<QQQ", data[24:48])
    records_offset = (64 + text_length + 4095) // 4096 * 4096
    pixels_offset = (5 + attributes + 15) // 16 * 16
    images = []
    for i in indices:
        start = records_offset + i * record_size + pixels_offset
        pixels = np.frombuffer(data[start:start + size * size * channels], dtype=np.uint8)
        images.append(pixels.reshape(size, size, channels) / 255.0)
    return np.stack(images)


def conv2d(x, weight, bias):
    """PyTorch Conv2d(stride=2, padding=1), weight (out, in, 4, 4), x (N, in, H, W)."""
    n, _, height, width = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, weight.shape[0], height // 2, width // 2))
    for ky in range(4):
        for kx in range(4):
            taps = padded[:, :, ky:ky + height:2, kx:kx + width:2]
            out += np.einsum("nchw,oc->nohw", taps, weight[:, :, ky, kx])
    return out + bias[None, :, None, None]


def conv_transpose2d(x, weight, bias):
    """PyTorch ConvTranspose2d(stride=2, padding=1), weight (in, out, 4, 4), x (N, in, H, W):
    input pixel (i, j) adds weight[:, :, ky, kx] to output pixel (2i - 1 + ky, 2j - 1 + kx)."""
    n, _, height, width = x.shape
    full = np.zeros((n, weight.shape[1], 2 * height + 2, 2 * width + 2))
    for ky in range(4):
        for kx in range(4):
            full[:, :, ky:ky + 2 * height:2, kx:kx + 2 * width:2] += np.einsum("nchw,co->nohw", x, weight[:, :, ky, kx])
    return full[:, :, 1:-1, 1:-1] + bias[None, :, None, None]


def relu(x):
    return np.maximum(x, 0)


class NumPyVAE:
    def __init__(self, tensors, config):
        self.p = {name: value.astype(np.float64) for name, value in tensors.items()}
        self.config = config

    def linear(self, name, x):
        return x @ self.p[name + ".weight"].T + self.p[name + ".bias"]

    def encode(self, images_nhwc):
        h = images_nhwc.transpose(0, 3, 1, 2)
        for i in range(len(self.config["encoderChannels"])):
            h = relu(conv2d(h, self.p[f"enc_conv{i + 1}.weight"], self.p[f"enc_conv{i + 1}.bias"]))
        h = h.reshape(h.shape[0], -1)  # NCHW flatten, as torch.flatten
        return self.linear("enc_mu", h), self.linear("enc_logvar", h)

    def decode(self, z):
        h = z
        for i in range(len(self.config["decoderWidths"]) + 1):
            h = relu(self.linear(f"dec_fc{i + 1}", h))
        channels = self.config["encoderChannels"][-1]
        side = self.config["imageSize"] >> len(self.config["encoderChannels"])
        h = h.reshape(-1, channels, side, side)
        layers = len(self.config["encoderChannels"])
        for i in range(layers):
            h = conv_transpose2d(h, self.p[f"dec_deconv{i + 1}.weight"], self.p[f"dec_deconv{i + 1}.bias"])
            h = relu(h) if i < layers - 1 else 1 / (1 + np.exp(-h))
        return h.transpose(0, 2, 3, 1)


def run(command):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {result.stderr.strip()}")


def check(what, engine, reference):
    difference = float(np.max(np.abs(engine.astype(np.float64) - reference)))
    print(f"{what}: shape {engine.shape}, max |engine - numpy| = {difference:.3g}, "
          f"numpy values from {reference.min():.3g} to {reference.max():.3g}")
    if engine.shape != reference.shape or not difference <= TOLERANCE:
        sys.exit(f"{what}: the engine and the NumPy reference differ by {difference:.3g} (tolerance {TOLERANCE})")


def main():
    vae, model_path, data_path, work = sys.argv[1:5]
    tensors, metadata = read_safetensors(model_path)
    config = json.loads(metadata["config"])
    model = NumPyVAE(tensors, config)

    indices = [0, 1, 2, 7]
    run([vae, "encode", model_path, "--data", data_path, "--indices", ",".join(map(str, indices)),
         "--out", f"{work}/codes.npy"])
    codes = np.load(f"{work}/codes.npy")
    mu, logvar = model.encode(read_images(data_path, indices))
    check("mu", codes[:, 0], mu)
    check("logvar", codes[:, 1], logvar)

    latents = np.concatenate([np.random.default_rng(1).normal(size=(3, config["latent"])), mu]).astype(np.float32)
    np.save(f"{work}/latents.npy", latents)
    run([vae, "decode", model_path, "--latents", f"{work}/latents.npy", "--out", f"{work}/images.npy"])
    check("decoded images", np.load(f"{work}/images.npy"), model.decode(latents.astype(np.float64)))

    if len(sys.argv) > 5:
        archive = np.load(sys.argv[5])
        if sorted(archive.files) != sorted(list(tensors) + ["config.json"]):
            sys.exit(f"npz members {sorted(archive.files)} differ from the safetensors tensors")
        for name, value in tensors.items():
            if archive[name].dtype != np.float32 or not np.array_equal(archive[name], value):
                sys.exit(f"npz: {name} differs from the safetensors tensor")
        if json.loads(archive["config.json"]) != config:
            sys.exit("npz: config.json differs from the safetensors metadata")
        print(f"npz: {len(tensors)} tensors and the configuration equal the safetensors file's")


if __name__ == "__main__":
    main()
