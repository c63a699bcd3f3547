

def test_release_free_memory_uses_glibc_where_present():
    """Streamed passes give freed heap pages back after each batch; on Linux with glibc malloc_trim is found."""
    import platform

    from cryomine_core.memory import release_free_memory

    released = release_free_memory()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert released is True
    else:
        assert released is False
