import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import loci.common.DebugTools;
import loci.common.services.ServiceFactory;
import loci.formats.ome.OMEXMLMetadata;
import loci.formats.services.OMEXMLService;
import ome.units.quantity.Length;

/**
 * Parses an OME-XML file (read as UTF-8, as QuPath's OME-Zarr reader reads
 * OME/METADATA.ome.xml) with Bio-Formats' OME-XML service and prints what QuPath takes
 * from it: pixel size with unit, channels, and the objective magnification found the way
 * QuPath finds it (the Image's ObjectiveSettings ID looked up among the Instruments).
 *
 * Run: java -cp bioformats_package.jar tests/java/ParseOmeXml.java FILE.ome.xml
 * Exit status 1 with a one-line message when the service rejects the document.
 */
public class ParseOmeXml {
  public static void main(String[] args) throws Exception {
    DebugTools.setRootLevel("WARN");
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    String xml = Files.readString(Path.of(args[0]), StandardCharsets.UTF_8);
    OMEXMLService service = new ServiceFactory().getInstance(OMEXMLService.class);
    OMEXMLMetadata meta;
    try {
      meta = service.createOMEXMLMetadata(xml);
    } catch (Exception e) {
      out.println("ParseError: " + e);
      System.exit(1);
      return;
    }
    out.println("ImageCount: " + meta.getImageCount());
    out.println("PhysicalSizeX: " + describe(meta.getPixelsPhysicalSizeX(0)));
    out.println("PhysicalSizeY: " + describe(meta.getPixelsPhysicalSizeY(0)));
    out.println("SizeC: " + meta.getPixelsSizeC(0).getValue());
    StringBuilder names = new StringBuilder();
    for (int c = 0; c < meta.getChannelCount(0); c++) {
      names.append(c == 0 ? "" : ",").append(meta.getChannelName(0, c));
    }
    out.println("Channels: " + names);
    out.println("NominalMagnification: " + magnification(meta));
  }

  private static String describe(Length length) {
    return length == null ? "none" : length.value() + " " + length.unit().getSymbol();
  }

  private static String magnification(OMEXMLMetadata meta) {
    String objective = meta.getObjectiveSettingsID(0);
    if (objective == null) {
      return "none";
    }
    for (int i = 0; i < meta.getInstrumentCount(); i++) {
      for (int o = 0; o < meta.getObjectiveCount(i); o++) {
        if (objective.equals(meta.getObjectiveID(i, o))) {
          Double value = meta.getObjectiveNominalMagnification(i, o);
          return value == null ? "none" : value.toString();
        }
      }
    }
    return "none";
  }
}
