print("vae")
