"""A user cost module that only ``test_the_module_is_imported_on_resolve_not_when_built`` imports."""


def params_plus_one(model, example_input):
    return 1 + sum(p.numel() for p in model.parameters())
