{
  "targets": [
    {
      "target_name": "cachet_native",
      "sources": ["inner-products.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"]
    }
  ]
}
