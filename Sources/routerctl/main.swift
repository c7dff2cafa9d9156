print("routerctl")
