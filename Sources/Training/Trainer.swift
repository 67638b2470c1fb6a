import VAEEngine
