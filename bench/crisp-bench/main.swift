print("crisp-bench")
