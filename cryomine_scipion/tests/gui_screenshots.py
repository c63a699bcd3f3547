"""Open a Scipion project window under an X server, show CryoMine in the Tomography tree, open
each CryoMine protocol form and the results viewer, and save PNG screenshots. The viewer shows the
figures of a real core run (``cryomine simulate subtomograms`` + ``cryomine align average`` with
the true poses) written into the "align and average" run's extra folder. Run by test_gui.py as a subprocess:

    python gui_screenshots.py OUT_DIR PROTOCOL_CLASS [PROTOCOL_CLASS ...]

DISPLAY and the headless Scipion variables must be set. Prints one JSON line with what it saw.
"""

import json
import os
import sys
import time
from pathlib import Path


def main(out_dir, class_names):
    import pyworkflow.gui as pwgui  # noqa: F401  (initialises Tk defaults)
    from PIL import ImageGrab
    from pwem import Domain
    from pyworkflow.gui.project import ProjectWindow
    from pyworkflow.project import Manager

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    display = os.environ["DISPLAY"]
    manager = Manager()
    name = f"CryomineGui_{int(time.time())}"
    project = manager.createProject(name)
    project.settings.setProtocolView("Tomography")
    project.settings.write()
    protocols = Domain.getProtocols()
    saved = []
    for cls_name in class_names:
        prot = project.newProtocol(protocols[cls_name])
        project.saveProtocol(prot)
        saved.append(prot)

    viewerProt = next((p for p in saved if p.getClassName() == "ProtCryomineAlign"), None)
    if viewerProt is not None:
        os.chdir(project.getPath())  # run paths are relative to the project folder (as in the GUI)
        _make_align_outputs(Path(viewerProt._getExtraPath()).resolve())

    window = ProjectWindow(project.getPath())
    root = window.root
    root.geometry("1600x1000+0+0")
    report = {"tree_items": [], "forms": [], "screenshots": []}

    def grab(fname):
        path = out / fname
        ImageGrab.grab(xdisplay=display).save(path)
        report["screenshots"].append(str(path))

    def show_tree():
        vw = window.getViewWidget()
        tree, items = vw.protTree, vw.protTreeItems
        for item_id, node in items.items():
            if getattr(node, "value", None) in class_names:
                tree.see(item_id)
                tree.selection_add(item_id)
                report["tree_items"].append(node.value)
        report["view"] = vw.project.getProtocolView()
        root.update()
        root.after(800, lambda: (grab("project_tomography_tree.png"), root.after(200, open_forms, 0)))

    def open_forms(i):
        vw = window.getViewWidget()
        if i >= len(saved):
            root.after(200, show_viewer)
            return
        prot = saved[i]

        def shoot():
            grab(f"form_{prot.getClassName()}.png")
            forms = [w for w in root.winfo_children() if w.winfo_class() != "Frame" and w.winfo_toplevel() is not root]
            report["forms"].append(prot.getClassName()) if forms else None
            for w in forms:  # close the form window
                w.destroy()
            root.after(300, open_forms, i + 1)

        # the form may run its own event loop, so schedule the screenshot before opening it
        root.after(2000, shoot)
        vw._selectItemProtocol(prot)
        vw._openProtocolForm(prot)

    def show_viewer():
        if viewerProt is None:
            root.after(200, finish)
            return
        import matplotlib.pyplot as plt
        from pyworkflow.gui.plotter import Plotter

        from cryomine_scipion.viewers.viewer_plots import CryomineResultsViewer

        Plotter.setBackend("TkAgg")
        views = CryomineResultsViewer(project=project)._visualize(viewerProt)
        for view in views:
            view.show()
        report["viewers"] = [viewerProt.getClassName()] if views and all(hasattr(v, "figure") for v in views) else []

        def shoot():
            grab(f"viewer_{viewerProt.getClassName()}.png")
            plt.close("all")
            root.after(200, finish)

        root.after(2000, shoot)

    def finish():
        print(json.dumps(report), flush=True)
        os._exit(0)

    root.after(2500, show_tree)
    root.after(150000, lambda: (print(json.dumps({"error": "timeout", **report}), flush=True), os._exit(3)))
    window.show()


def _make_align_outputs(extra):
    """Real core outputs for the viewer: a tiny simulated set averaged with its true poses."""
    import subprocess
    import tempfile

    core = [sys.executable, "-m", "cryomine_core", "--log-level", "WARNING"]
    with tempfile.TemporaryDirectory(prefix="cryomine-gui-") as tmp:
        subprocess.run(core + ["simulate", "subtomograms", "--out", tmp, "--structures", "phantom:0", "--n-per-class",
                               "8", "--box", "24", "--voxel-size", "12", "--snr", "2", "--device", "cpu"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(core + ["align", "average", "--in", str(Path(tmp) / "particles.star"), "--out", str(extra),
                               "--device", "cpu"], check=True, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
